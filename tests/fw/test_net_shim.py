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


def test_a_second_socket_on_the_same_port_is_refused_and_named():
    # issue 10 finding 12: no SO_REUSEADDR, so a second board with the same config fails
    # to start instead of taking the first one's traffic; the error names the address
    port = 47125
    a = net.udp_socket("127.0.0.1", port)
    try:
        try:
            b = net.udp_socket("127.0.0.1", port)
        except OSError as e:
            assert str(e.args[0]) == "cannot bind UDP 127.0.0.1:%d (address in use)" % port, e.args
        else:
            b.close()
            raise AssertionError("a second socket bound the same port")
    finally:
        a.close()
