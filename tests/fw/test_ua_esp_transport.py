# The app's ESP transport seam (firmware/sipling/shell/loop.py EspTransport): after an
# ipsec-3gpp agreement requests leave inside ESP-in-UDP on SA1, answers on SA4, inbound
# ESP counts as protected and plain datagrams no longer do. The proxy side here is the ESP
# core itself with the mirrored SA set (DESIGN.md 4 table), on loopback sockets.
import binascii
import time

from sipling.esp.sa import SADB
from sipling.shell import esp_carrier, net
from sipling.shell.loop import EspTransport
from util import poll_until

IK = "00112233445566778899aabbccddeeff"
CK = "0f0e0d0c0b0a09080706050403020100"


class Ag:
    mechanism = b"ipsec-3gpp"
    alg = b"hmac-sha-1-96"
    ealg = b"aes-cbc"
    local = {"spi_c": 3001, "spi_s": 3002, "port_c": 47162, "port_s": 47164}
    peer = {"spi_c": 4001, "spi_s": 4002, "port_c": 47166, "port_s": 47168}

    def describe(self):
        return "ipsec-3gpp test"


def rng(n):
    return bytes(range(n))


def test_esp_transport_protects_after_agreement():
    cfg = {"local": {"host": "127.0.0.1", "port_c": 47062, "port_s": 47064},
           "proxy": {"host": "127.0.0.1", "port": 47060},
           "ipsec": {"carrier": "udp-encap", "encap_port": 47500, "peer_encap_port": 47501, "ik": IK, "ck": CK}}
    t = EspTransport(cfg, rng)
    pdb = SADB(rng)
    pc = esp_carrier.UdpCarrier(pdb, "127.0.0.1", 47501, keepalive_ms=0)
    pc.set_peer("127.0.0.1", 47500)
    plain_peer = net.udp_socket("127.0.0.1", 47060)
    try:
        ag = Ag()
        # before the agreement: plain UDP to the proxy's SIP port
        t.send(b"REGISTER offer", ("127.0.0.1", 47060))
        data, _ = poll_until(lambda: _recv(plain_peer))
        assert data == b"REGISTER offer"
        t.agreed(ag)
        u, p = ag.local, ag.peer
        ppair = pdb.install_3gpp(p["spi_c"], p["spi_s"], p["port_c"], p["port_s"],
                                 u["spi_c"], u["spi_s"], u["port_c"], u["port_s"],
                                 "hmac-sha-1-96", "aes-cbc", binascii.unhexlify(IK), binascii.unhexlify(CK))
        # a request: SA1, our port-c -> their port-s
        t.send(b"REGISTER protected", ("127.0.0.1", 47060))
        sa, sport, dport, payload = poll_until(lambda: pc.receive(0))
        assert bytes(payload) == b"REGISTER protected"
        assert (sa.spi, sport, dport) == (p["spi_s"], u["port_c"], p["port_s"])
        # a response to the proxy's request: SA4, our port-s -> their port-c
        t.send(b"SIP/2.0 200 OK", ("127.0.0.1", 47060))
        sa, sport, dport, payload = poll_until(lambda: pc.receive(0))
        assert (sa.spi, sport, dport, bytes(payload)) == (p["spi_c"], u["port_s"], p["port_c"], b"SIP/2.0 200 OK")
        # inbound on SA2 (their port-c -> our port-s) is protected and from the proxy
        assert ppair.out_c.dport == u["port_s"]
        pc.send_udp(ppair.out_c, "127.0.0.1", "127.0.0.1", p["port_c"], u["port_s"], b"MESSAGE in")
        r = poll_until(lambda: t.recv(t.carrier.sock))
        assert r == (b"MESSAGE in", ("127.0.0.1", 47060), True)
        # plain datagrams from the proxy's address are no longer protected
        plain_peer.sendto(b"MESSAGE plain", net.sockaddr("127.0.0.1", 47064))
        r = poll_until(lambda: t.recv(t.plain.sock_s))
        assert r == (b"MESSAGE plain", ("127.0.0.1", 47060), False)
        # drop (renegotiation, tamper alarm): the SAs go away
        t.drop()
        assert t.pair is None and t.db.inbound == {}
    finally:
        t.close()
        pc.close()
        plain_peer.close()


def _recv(s):
    try:
        d, a = s.recvfrom(2048)
        return d, net.peer(a)
    except OSError:
        return None


class AgMan:
    mechanism = b"ipsec-man"

    def describe(self):
        return "ipsec-man"


def test_ipsec_man_installs_provisioned_sas_and_persists_sequence_mark():
    import os
    hwm = "/tmp/sipling-test-seq-%d.json" % (time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000))
    cfg = {"local": {"host": "127.0.0.1", "port_c": 47072, "port_s": 47074},
           "proxy": {"host": "127.0.0.1", "port": 47070},
           "ipsec_man": {"alg": "hmac-sha-1-96", "ealg": "null", "ik": IK, "ck": CK,
                         "spi_uc": 5001, "spi_us": 5002, "spi_pc": 6001, "spi_ps": 6002,
                         "port_uc": 47072, "port_us": 47074, "port_pc": 47076, "port_ps": 47078}}
    t = EspTransport(cfg, rng, carrier=esp_carrier.UdpCarrier(SADB(rng), "127.0.0.1", 47510, keepalive_ms=0),
                     hwm_path=hwm)
    try:
        t.agreed(AgMan())
        p = t.pair
        # SA1 uses the proxy's spi-s to its port-s, SA4 the proxy's spi-c (DESIGN.md 4 table)
        assert (p.out_c.spi, p.out_c.sport, p.out_c.dport) == (6002, 47072, 47078)
        assert (p.out_s.spi, p.out_s.sport, p.out_s.dport) == (6001, 47074, 47076)
        assert sorted(t.db.inbound) == [5001, 5002]
        t.send(b"REGISTER", ("127.0.0.1", 47070))
        with open(hwm) as f:
            marks = f.read()
        assert '"6002": 1024' in marks  # stored before the first number of the block was used
        # a restart reads it back: numbers continue above the mark, never repeat
        t.drop()
        t.agreed(AgMan())
        assert t.pair.out_c.counter.last == 1024  # the stored mark: the next number is 1025
        assert t.pair.out_c.counter.take() == 1025
    finally:
        t.close()
        try:
            os.remove(hwm)
        except OSError:
            pass


def _man_cfg(n):
    return {"local": {"host": "127.0.0.1", "port_c": 47082, "port_s": 47084},
            "proxy": {"host": "127.0.0.1", "port": 47080},
            "ipsec": {"carrier": "udp-encap", "encap_port": 47520 + n, "peer_encap_port": 47530,
                      "ik": "", "ck": ""},
            "ipsec_man": {"alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": IK, "ck": CK,
                          "spi_uc": 5001, "spi_us": 5002, "spi_pc": 6001, "spi_ps": 6002,
                          "port_uc": 47082, "port_us": 47084, "port_pc": 47086, "port_ps": 47088}}


def test_ipsec_man_captured_packets_are_refused_after_a_reboot():
    # manual keys never change: an owner's MESSAGE captured before a reboot must not be
    # accepted again after it (RFC 4303 3.4.3); the window top is persisted next to the
    # sequence marks, rounded up, and read back when the SAs are installed
    import os
    hwm = "/tmp/sipling-test-rx-%d.json" % (time.ticks_ms() if hasattr(time, "ticks_ms") else int(time.time() * 1000))
    proxy = SADB(rng).install_manual(
        {"our_spi_c": 6001, "our_spi_s": 6002, "our_port_c": 47086, "our_port_s": 47088,
         "their_spi_c": 5001, "their_spi_s": 5002, "their_port_c": 47082, "their_port_s": 47084,
         "alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": binascii.unhexlify(IK), "ck": binascii.unhexlify(CK)},
        lambda spi: 0, lambda spi, v: None)
    from sipling.esp import udp
    pkts = [bytes(udp.protect_udp(proxy.out_c, "127.0.0.1", "127.0.0.1", 47086, 47084, b"MESSAGE set relay on %d" % i))
            for i in range(1, 21)]  # seq 1..20 toward our port-s (SA2)
    src = net.sockaddr("127.0.0.1", 47530)
    boots = []
    try:
        for boot in range(3):
            t = EspTransport(_man_cfg(boot), rng, hwm_path=hwm)
            boots.append(t)
            t.agreed(AgMan())
            h = t.carrier.handle_datagram
            if boot == 0:
                for i in (1, 2, 3):
                    r = h(pkts[i - 1], src, 0)
                    assert r is not None and bytes(r[3]) == b"MESSAGE set relay on %d" % i
                assert h(pkts[0], src, 0) is None  # the plain replay within one boot
            else:
                # every packet accepted before the reboot is refused after it
                for i in range(1, accepted + 1):
                    assert h(pkts[i - 1], src, 0) is None
                assert t.db.drop_counts()["replay"] == accepted
                # new packets are accepted again (the numbers up to the stored mark, which the
                # sender had not used yet, are refused: fewer than one block of them)
                with open(hwm) as f:
                    mark = json_load(f.read())["in-5002"]
                assert accepted <= mark < accepted + 8
                for i in range(accepted + 1, mark + 1):
                    assert h(pkts[i - 1], src, 0) is None
                r = h(pkts[mark], src, 0)
                assert r is not None and bytes(r[3]) == b"MESSAGE set relay on %d" % (mark + 1)
            accepted = t.db.inbound[5002].window.top
            t.close()
    finally:
        for t in boots:
            try:
                t.close()
            except OSError:
                pass
        for p in (hwm, hwm + ".tmp"):
            try:
                os.remove(p)
            except OSError:
                pass


def json_load(s):
    import json
    return json.loads(s)


class _BigApp:
    # the app seam loop.run drives: one oversized response (a 1401-byte OPTIONS from anyone
    # gets ~1466 bytes back), then ordinary datagrams that must still go out
    def __init__(self, big):
        self.out = [(big, ("127.0.0.1", 47060)), (b"SIP/2.0 200 after", ("127.0.0.1", 47060))]
        self.ticks = 0
        self.stopping = False
        self.ua = self

    def status(self):
        return "test"

    def start(self, now):
        pass

    def handle_timer(self, now):
        self.ticks += 1
        if self.ticks == 2:
            self.out.append((b"MESSAGE still serving", ("127.0.0.1", 47060)))
        elif self.ticks >= 3:
            self.stopping = True

    def datagrams_to_send(self):
        o = self.out
        self.out = []
        return o

    def get_timer(self):
        return 0

    def stopped(self):
        return True

    def receive(self, data, src, protected, now):
        pass

    def stop(self, now):
        self.stopping = True


def test_oversized_datagram_under_esp_is_dropped_and_the_loop_keeps_serving():
    from sipling import log
    from sipling.shell import clock, loop
    now_ms = clock.now_ms
    if not hasattr(time, "ticks_ms"):  # CPython: the board clock's stand-in
        clock.now_ms = lambda: int(time.time() * 1000)
    cfg = {"local": {"host": "127.0.0.1", "port_c": 47062, "port_s": 47064},
           "proxy": {"host": "127.0.0.1", "port": 47060},
           "ipsec": {"carrier": "udp-encap", "encap_port": 47540, "peer_encap_port": 47541, "ik": IK, "ck": CK}}
    t = EspTransport(cfg, rng)
    pdb = SADB(rng)
    pc = esp_carrier.UdpCarrier(pdb, "127.0.0.1", 47541, keepalive_ms=0)
    lines = []
    log.set_sink(lines.append)
    try:
        ag = Ag()
        t.agreed(ag)
        u, p = ag.local, ag.peer
        pdb.install_3gpp(p["spi_c"], p["spi_s"], p["port_c"], p["port_s"],
                         u["spi_c"], u["spi_s"], u["port_c"], u["port_s"],
                         "hmac-sha-1-96", "aes-cbc", binascii.unhexlify(IK), binascii.unhexlify(CK))
        big = b"SIP/2.0 200 OK\r\n" + b"X" * 1450  # 1466 bytes: over the 1500-byte SA buffer
        assert loop.run(_BigApp(big), t) == 0
        got = []
        for _ in range(2):
            r = poll_until(lambda: pc.receive(0))
            assert r is not None
            got.append(bytes(r[3]))
        assert got == [b"SIP/2.0 200 after", b"MESSAGE still serving"]
        assert t.send_errors == 1
        drops = [ln for ln in lines if "dropped" in ln and "1466 bytes" in ln]
        assert len(drops) == 1 and "WARN" in drops[0], lines
    finally:
        clock.now_ms = now_ms
        log.set_sink(None)
        t.close()
        pc.close()


class _FlakyTransport:
    # a transport whose recv() raises once (a bug or a full flash under the replay mark),
    # then delivers; its keep-alive tick raises too (OSError from sendto on a dead link)
    def __init__(self):
        self.sock = net.udp_socket("127.0.0.1", 47091)
        self.calls = 0

    def socks(self):
        return (self.sock,)

    def tick(self, now):
        raise OSError(113)

    def recv(self, sock):
        self.calls += 1
        data, _addr = sock.recvfrom(256)
        if self.calls == 1:
            raise ValueError("boom")
        return data, ("127.0.0.1", 47092), True

    def send(self, data, dst):
        pass

    def close(self):
        self.sock.close()


class _CountingApp(_BigApp):
    def __init__(self):
        super().__init__(b"")
        self.out = []
        self.got = []

    def handle_timer(self, now):
        pass

    def get_timer(self):
        return None

    def receive(self, data, src, protected, now):
        self.got.append(data)
        if len(self.got) == 1:
            self.stopping = True


def test_a_raising_recv_or_keepalive_does_not_stop_the_loop():
    from sipling import log
    from sipling.shell import clock, loop
    now_ms = clock.now_ms
    if not hasattr(time, "ticks_ms"):
        clock.now_ms = lambda: int(time.time() * 1000)
    t = _FlakyTransport()
    tx = net.udp_socket("127.0.0.1", 0)
    lines = []
    log.set_sink(lines.append)
    try:
        for payload in (b"first", b"second"):
            tx.sendto(payload, net.sockaddr("127.0.0.1", 47091))
        app = _CountingApp()
        assert loop.run(app, t) == 0
        assert app.got == [b"second"]          # the first raised inside recv: logged, not fatal
        assert [ln for ln in lines if "receive" in ln and "boom" in ln], lines
        assert [ln for ln in lines if "keep-alive" in ln], lines
    finally:
        clock.now_ms = now_ms
        log.set_sink(None)
        t.close()
        tx.close()
