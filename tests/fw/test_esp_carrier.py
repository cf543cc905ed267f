# ESP carriers on loopback, both interpreters: ESP-in-UDP (RFC 3948) with keep-alives,
# and raw ESP (IP protocol 50) when the process may open a raw socket (root).
import time

from esp_util import pair_dbs

from sipling.shell import esp_carrier
from util import poll_until

SIP = b"OPTIONS sip:ue@127.0.0.1:5064 SIP/2.0\r\nContent-Length: 0\r\n\r\n"


def _wait(carrier, now_ms=0, tries=200):
    return poll_until(lambda: carrier.receive(now_ms), tries)


def _sockets_quiet(carrier, tries=20):
    for _ in range(tries):
        if carrier.receive(0) is not None:
            return False
        time.sleep(0.002)
    return True


def test_esp_in_udp_round_trip_keepalive_and_non_esp_marker():
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc")
    a = esp_carrier.UdpCarrier(ue, "127.0.0.1", 47511, keepalive_ms=1000)
    b = esp_carrier.UdpCarrier(px, "127.0.0.1", 47512, keepalive_ms=0)
    try:
        a.set_peer("127.0.0.1", 47512, now_ms=0)
        assert a.next_timer() == 1000
        a.send_udp(p_ue.out_c, "127.0.0.1", "127.0.0.1", 5062, 5068, SIP, now_ms=10)
        assert a.next_timer() == 1010  # any ESP packet resets the keep-alive timer
        r = _wait(b)
        assert r is not None
        sa, sport, dport, data = r
        assert sa is p_px.in_s and (sport, dport) == (5062, 5068) and bytes(data) == SIP
        assert b.peer == ("127.0.0.1", 47511)  # replies follow the authenticated source
        a.poll(1009)
        assert a.keepalives_tx == 0
        a.poll(1010)
        assert a.keepalives_tx == 1 and a.next_timer() == 2010
        b.sock.sendto(b"\x00\x00\x00\x00ike", b._peer_addr)  # non-ESP marker to a
        assert _sockets_quiet(b)
        assert b.keepalives_rx == 1 and px.drop_counts()["unknown_spi"] == 0
        # proxy port-s -> UE port-c travels on SA3 (DESIGN.md table)
        b.send_udp(p_px.out_s, "127.0.0.1", "127.0.0.1", 5068, 5062, b"SIP/2.0 200 OK\r\n\r\n")
        r = _wait(a)
        assert r is not None and r[0] is p_ue.in_c and r[1:3] == (5068, 5062)
        assert bytes(r[3]) == b"SIP/2.0 200 OK\r\n\r\n"
        assert a.non_esp == 1
    finally:
        a.close()
        b.close()


def test_forged_datagram_does_not_move_peer():
    ue, p_ue, px, p_px = pair_dbs("hmac-md5-96", "null")
    b = esp_carrier.UdpCarrier(px, "127.0.0.1", 47513, keepalive_ms=0)
    try:
        from esp_util import Rng
        from sipling.esp import codec
        from sipling.esp import sa as sam
        other = sam.SADB(Rng(9)).install_3gpp(0x1001, 0x1002, 1, 2, 0x2001, 0x2002, 3, 4,
                                              "hmac-md5-96", "null", b"k" * 16, None)
        forged = bytes(codec.protect(other.out_c, b"x"))  # right SPI, wrong key
        b.set_peer("127.0.0.1", 5999)
        assert b.handle_datagram(forged, b._peer_addr, 0) is None
        assert px.drop_counts()["bad_icv"] == 1 and b.peer == ("127.0.0.1", 5999)
    finally:
        b.close()


def test_raw_esp_protocol_50_when_root():
    try:
        ra = esp_carrier.RawCarrier(None, "127.0.0.1")
    except OSError:
        return  # not root: raw sockets are unavailable (the interop host test covers UDP)
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-256-128", "des-ede3-cbc")
    ra.db = px
    rb = esp_carrier.RawCarrier(ue, "127.0.0.1")
    try:
        rb.set_peer("127.0.0.1")
        rb.send_udp(p_ue.out_c, "127.0.0.1", "127.0.0.1", 5062, 5068, SIP)
        got = None
        for _ in range(200):  # both raw sockets see every protocol-50 packet on lo
            r = ra.receive(0)
            if r is not None:
                got = r
                break
            time.sleep(0.005)
        assert got is not None and got[0] is p_px.in_s and bytes(got[3]) == SIP
        assert ra.peer == ("127.0.0.1", 0)
    finally:
        ra.close()
        rb.close()


class _NoSock:
    def close(self):
        pass


def _ip4(src, payload):
    # minimal IPv4 header as a raw socket delivers it (RFC 791): IHL 5, protocol 50
    h = bytearray(20)
    h[0] = 0x45
    h[9] = 50
    for i, part in enumerate(src.split(".")):
        h[12 + i] = int(part)
    return bytes(h) + payload


def test_older_packet_from_another_address_does_not_move_peer():
    # an on-path attacker re-injects a delayed (authentic, not yet seen) packet from its own
    # address: it passes the replay window but must not redirect our traffic (NAT rebinding
    # follows only packets that move the window forward)
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc")
    b = esp_carrier.UdpCarrier(px, "127.0.0.1", 47514, keepalive_ms=0)
    try:
        from sipling.esp import udp
        from sipling.shell import net
        p1 = bytes(udp.protect_udp(p_ue.out_c, "127.0.0.1", "127.0.0.1", 5062, 5068, b"one"))
        p2 = bytes(udp.protect_udp(p_ue.out_c, "127.0.0.1", "127.0.0.1", 5062, 5068, b"two"))
        p3 = bytes(udp.protect_udp(p_ue.out_c, "127.0.0.1", "127.0.0.1", 5062, 5068, b"three"))
        b.set_peer("127.0.0.1", 5999)
        r = b.handle_datagram(p2, net.sockaddr("127.0.0.1", 6001), 0)
        assert r is not None and bytes(r[3]) == b"two" and b.peer == ("127.0.0.1", 6001)
        r = b.handle_datagram(p1, net.sockaddr("127.0.0.1", 6666), 0)  # seq 1 < top 2
        assert r is not None and bytes(r[3]) == b"one"  # delivered (inside the window) ...
        assert b.peer == ("127.0.0.1", 6001)  # ... but the peer stays put
        r = b.handle_datagram(p3, net.sockaddr("127.0.0.1", 6002), 0)  # newer: a real rebinding
        assert r is not None and b.peer == ("127.0.0.1", 6002)
    finally:
        b.close()
    # the raw carrier follows the same rule for the IPv4 source address
    ue, p_ue, px, p_px = pair_dbs("hmac-md5-96", "null")
    rc = esp_carrier.RawCarrier(px, sock=_NoSock())
    from sipling.esp import udp
    q1 = bytes(udp.protect_udp(p_ue.out_c, "10.0.0.1", "10.0.0.2", 5062, 5068, b"one"))
    q2 = bytes(udp.protect_udp(p_ue.out_c, "10.0.0.1", "10.0.0.2", 5062, 5068, b"two"))
    rc.set_peer("10.0.0.1")
    assert rc.handle_datagram(_ip4("10.0.0.1", q2), None, 0) is not None
    assert rc.handle_datagram(_ip4("10.9.9.9", q1), None, 0) is not None
    assert rc.peer == ("10.0.0.1", 0)


def test_replay_mark_write_failure_drops_the_packet():
    # ipsec-man: the inbound window top could not be stored (flash full): the packet is
    # not accepted, the carrier counts it and keeps working once the store works again
    from sipling.esp import udp
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "null")
    fail = [True]
    stored = []

    def persist(v):
        if fail[0]:
            raise OSError(28)
        stored.append(v)
    p_px.in_s.window.reserve(persist, 8)
    rc = esp_carrier.RawCarrier(px, sock=_NoSock())
    q1 = bytes(udp.protect_udp(p_ue.out_c, "10.0.0.1", "10.0.0.2", 5062, 5068, b"one"))
    assert rc.handle_datagram(_ip4("10.0.0.1", q1), None, 0) is None
    assert rc.errors == 1 and p_px.in_s.window.top == 0 and rc.peer is None
    fail[0] = False
    r = rc.handle_datagram(_ip4("10.0.0.1", q1), None, 0)
    assert r is not None and bytes(r[3]) == b"one" and stored == [8]
