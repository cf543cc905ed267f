# The socket address shim (firmware/sipling/shell/net.py) on both interpreters.
from sipling.shell import net


def test_sockaddr_roundtrips_through_peer():
    a = net.sockaddr("127.0.0.1", 5064)
    assert net.peer(a) == ("127.0.0.1", 5064)


def test_udp_socket_send_and_receive_on_loopback():
    s1 = net.udp_socket("127.0.0.1", 0)
    r = net.udp_socket("127.0.0.1", 47123)
    try:
        s1.sendto(b"ping", net.sockaddr("127.0.0.1", 47123))
        import time
        for _ in range(100):
            try:
                data, addr = r.recvfrom(64)
                break
            except OSError:
                time.sleep(0.01)
        assert data == b"ping"
        assert net.peer(addr)[0] == "127.0.0.1"
    finally:
        s1.close()
        r.close()
