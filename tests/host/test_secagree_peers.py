"""The RFC 3329 client core (firmware/sipling/secagree) against real sec-agree servers.

A small scripted client drives it: sipling.sip.parser for responses, SecAgreeClient for every
decision, plain UDP sockets on loopback (an unprotected socket, our port-s, and a fresh port-c
per offer). Nothing is ESP-protected here (this kernel has no ESP; the device app does ESP);
these tests pin down the signalling.

1. SIPp scenarios (tests/interop/sipp/secagree_*.xml) acting as the registrar: 494 + digest,
   421 + Require: sec-agree with ipsec-3gpp pairs, IMS-style 401 + Security-Server, and a 494
   to the protected request (tampering). SIPp checks Security-Verify with a regex.
2. Kamailio 5.6 with tests/interop/kamailio/secagree.cfg: the digest mechanism (Kamailio
   recomputes d-ver over its own list and checks the credentials) and the signalling of
   ipsec-3gpp (protected REGISTER to the port-s in its list). A man in the middle that strips
   the ipsec-3gpp line from the 494 is detected: Kamailio answers 494, the client raises the
   alarm and agrees afresh.
"""
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from sipling.secagree import client as C
from sipling.secagree import dver
from sipling.secagree.policy import Policy
from sipling.sip import parser
from sipling.sip.message import request

import peers

HERE = os.path.dirname(os.path.abspath(__file__))
INTEROP = os.path.join(os.path.dirname(HERE), "interop")
PASSWORD = b"s3cret-secagree"
USER = b"door"
DOMAIN = b"example.test"


def _challenge(msg):
    for name in ("WWW-Authenticate", "Proxy-Authenticate"):
        for v in msg.header_lines(name):
            v = bytes(v)
            if v[:6].lower() == b"digest":
                d = dict((k.lower(), a or b) for k, a, b in
                         re.findall(rb'([A-Za-z-]+)\s*=\s*(?:"([^"]*)"|([^,\s]+))', v[6:]))
                d[b"header"] = b"Authorization" if name[0] == "W" else b"Proxy-Authorization"
                return d
    return None


class ScriptedClient:
    """Registers through SecAgreeClient; records every response and every event."""

    def __init__(self, policy, server, dver_on=True, tamper_dver=False, password=PASSWORD,
                 backoff_wait=True):
        self.c = C.SecAgreeClient(policy, os.urandom)
        self.policy = policy
        self.server = server
        self.dver_on = dver_on
        self.tamper_dver = tamper_dver
        self.password = password
        self.plain = self._sock(0)
        self.ps = self._sock(policy.port_s)
        self.pcs = {}
        self.events = []
        self.responses = []
        self.sent = []
        self.challenge = None
        self.nc = 0
        self.cseq = 0
        self.call_id = b"secagree-%s@127.0.0.1" % os.urandom(4).hex().encode()
        self.t0 = time.monotonic()

    @staticmethod
    def _sock(port):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return s

    def now(self):
        return int((time.monotonic() - self.t0) * 1000)

    def close(self):
        for s in [self.plain, self.ps] + list(self.pcs.values()):
            s.close()

    def _pc(self, port):
        if port not in self.pcs:
            self.pcs[port] = self._sock(port)
        return self.pcs[port]

    def _feed(self, evs):
        self.events += evs
        return [k for k, _ in evs]

    def _request(self):
        c = self.c
        ag = c.agreement if c.protected() else None
        self.cseq += 1
        uri = b"sip:" + DOMAIN
        if ag is not None:
            sock = self._pc(ag.local["port_c"])
            via_port = ag.local["port_s"]   # Via sent-by and Contact carry our port-s
            dst = ("127.0.0.1", ag.peer["port_s"]) if ag.mechanism == b"ipsec-3gpp" else self.server
        else:
            sock = self.plain
            via_port = self.plain.getsockname()[1]
            dst = self.server
        hdrs = [
            (b"Via", b"SIP/2.0/UDP 127.0.0.1:%d;branch=z9hG4bK%s;rport" % (via_port, os.urandom(6).hex().encode())),
            (b"Max-Forwards", b"70"),
            (b"From", b"<sip:%s@%s>;tag=f%d" % (USER, DOMAIN, os.getpid())),
            (b"To", b"<sip:%s@%s>" % (USER, DOMAIN)),
            (b"Call-ID", self.call_id),
            (b"CSeq", b"%d REGISTER" % self.cseq),
            (b"Contact", b"<sip:%s@127.0.0.1:%d>" % (USER, self.policy.port_s)),
            (b"Expires", b"600"),
        ]
        sec = c.request_headers()
        # answer the challenge when it is the digest mechanism's, or when the agreement came
        # in a 401/407 (IMS: the challenge is the registration's own authentication)
        if ag is not None and self.challenge is not None and (
                ag.mechanism == b"digest" or ag.status in (401, 407)):
            ch = self.challenge
            alg = ag.d_alg or ch.get(b"algorithm") or b"MD5"
            qop = ag.d_qop or (b"auth" if ch.get(b"qop") else None)
            self.nc += 1
            nc = b"%08x" % self.nc
            cnonce = os.urandom(4).hex().encode()
            resp = dver.request_digest(alg, USER, ch[b"realm"], self.password, ch[b"nonce"],
                                       b"REGISTER", uri, qop, cnonce, nc)
            auth = b'Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", algorithm=%s' % (
                USER, ch[b"realm"], ch[b"nonce"], uri, resp, alg)
            if qop:
                auth += b', cnonce="%s", qop=%s, nc=%s' % (cnonce, qop, nc)
            if ch.get(b"opaque"):
                auth += b', opaque="%s"' % ch[b"opaque"]
            hdrs.append((ch[b"header"], auth))
            if ag.mechanism == b"digest" and self.dver_on:
                dv = ag.d_ver(USER, ch[b"realm"], self.password, ch[b"nonce"], b"REGISTER", uri,
                              cnonce, nc, b"", alg, qop)
                if self.tamper_dver:
                    dv = (b"0" if dv[:1] != b"0" else b"1") + dv[1:]
                sec = [h for h in sec if h[0] != b"Security-Verify"]
                sec = [h for h in ag.verify_headers(dv) if h[0] == b"Security-Verify"] + sec
        msg = request(b"REGISTER", uri, hdrs + sec)
        data = msg.serialize()
        self.sent.append((ag is not None, sock.getsockname()[1], dst, data))
        sock.sendto(data, dst)

    def _recv(self, timeout=5.0):
        socks = [self.plain, self.ps] + list(self.pcs.values())
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no response; sent:\n%s" % self.sent[-1][3].decode(errors="replace"))
            r, _, _ = select.select(socks, [], [], left)
            for s in r:
                data, _ = s.recvfrom(65535)
                m = parser.parse(data)
                if m.status is None or bytes(m.get("Call-ID")) != self.call_id:
                    continue
                if int(bytes(m.get("CSeq")).split()[0]) != self.cseq:
                    continue
                if m.status < 200:
                    continue
                return m, s.getsockname()[1]

    def register(self, max_steps=10, refresh=False):
        """Run until a 2xx to a protected REGISTER, FAILED, or max_steps; return final status.
        refresh=True: a registration refresh under the current agreement (fresh SPIs/port-c)."""
        if refresh:
            self._feed(self.c.refresh(self.now()))
        else:
            self._feed(self.c.start(self.now()))
        for _ in range(max_steps):
            protected = self.c.protected()
            self._request()
            m, port = self._recv()
            self.responses.append((m.status, protected, port))
            ch = _challenge(m)
            if ch is not None:
                self.challenge = ch
            kinds = self._feed(self.c.on_response(m.status, m, self.now(), protected))
            if protected and 200 <= m.status < 300:
                return m.status
            if "failed" in kinds:
                return m.status
            if "abort" in kinds:
                wait = self.c.get_timer() - self.now()
                time.sleep(max(0, wait) / 1000.0)
                self._feed(self.c.handle_timer(self.c.get_timer()))
            if not self.c.protected() and self.c.state != C.OFFERED:
                return m.status
        return None

    def kinds(self):
        return [k for k, _ in self.events]

    def logs(self):
        return [d for k, d in self.events if k in ("log", "alarm")]

    def agreements(self):
        return [d for k, d in self.events if k == "agreed"]


def _policy(base, **kw):
    d = dict(mechanisms=("ipsec-3gpp", "digest"), ipsec_algs=(("hmac-sha-1-96", "null"), ("hmac-sha-1-96", "aes-cbc")),
             digest=True, port_c=base, port_s=base + 8, port_c_span=8, max_retries=3, backoff_ms=20,
             backoff_max_ms=100)
    d.update(kw)
    return Policy(**d)


# ----------------------------------------------------------------------------- SIPp


class Sipp:
    def __init__(self, scenario):
        self.dir = tempfile.mkdtemp(prefix="sipling-sipp-")
        self.port = peers.free_udp_port()
        self.proc = subprocess.Popen(
            peers.sipp_argv(os.path.join(INTEROP, "sipp", scenario), self.port, timeout=30),
            cwd=self.dir, stdout=open(os.path.join(self.dir, "screen.txt"), "w"), stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL)
        time.sleep(0.3)

    def finish(self):
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        logs = ""
        for n in sorted(os.listdir(self.dir)):
            with open(os.path.join(self.dir, n), errors="replace") as f:
                logs += "--- %s\n%s" % (n, f.read()[-3000:])
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode, logs


@pytest.fixture
def sipp():
    if not peers.SIPP:
        pytest.skip("sipp not installed (make setup installs sip-tester)")
    made = []

    def start(scenario):
        s = Sipp(scenario)
        made.append(s)
        return s
    yield start
    for s in made:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()


def _run(sipp_peer, cl):
    try:
        status = cl.register()
    finally:
        cl.close()
    rc, logs = sipp_peer.finish()
    return status, rc, logs


def test_sipp_494_digest(sipp):
    s = sipp("secagree_494_digest.xml")
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base), ("127.0.0.1", s.port))
    status, rc, logs = _run(s, cl)
    assert status == 200, (cl.responses, logs)
    assert rc == 0, logs
    ag, = cl.agreements()
    assert ag.mechanism == b"digest" and ag.status == 494
    assert ag.challenge_overrides() == {"algorithm": b"MD5", "qop": b"auth"}
    assert [st for st, _, _ in cl.responses] == [494, 200]
    # the protected request echoed the list: each line exactly, d-ver in the digest item
    sent = cl.sent[-1][3]
    assert b"\r\nSecurity-Verify: ipsec-ike;q=0.9, DIGEST;Q=0.5 ;d-alg=MD5;d-qop=auth;x-note=\"a, b\";d-ver=\"" in sent
    assert "sec-agree: refused ipsec-ike;q=0.9: not implemented" in cl.logs()


def test_sipp_421_ipsec_pair_choice(sipp):
    s = sipp("secagree_421_ipsec.xml")
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base, require_ipsec=True), ("127.0.0.1", s.port))
    status, rc, logs = _run(s, cl)
    assert status == 200, (cl.responses, logs)
    assert rc == 0, logs
    ag, = cl.agreements()
    assert ag.status == 421 and ag.mechanism == b"ipsec-3gpp"
    # q=0.3 is a pair we never offered (des-ede3-cbc): the q=0.2 aes-cbc line is chosen
    assert (ag.alg, ag.ealg, ag.peer["spi_s"], ag.peer["spi_c"]) == (b"hmac-sha-1-96", b"aes-cbc", 3000000003, 3000000004)
    prot, src, dst, _ = cl.sent[-1]
    assert prot and src == ag.local["port_c"] and dst == ("127.0.0.1", s.port)
    logs_ = cl.logs()
    assert any("alg=hmac-sha-1-96 ealg=des-ede3-cbc was not offered" in x for x in logs_)
    assert "sec-agree: refused digest;q=0.25: policy requires ipsec" in logs_


def test_sipp_401_ims_style(sipp):
    s = sipp("secagree_401_ipsec.xml")
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base, ipsec_algs=(("hmac-sha-1-96", "null"),)), ("127.0.0.1", s.port))
    status, rc, logs = _run(s, cl)
    assert status == 200, (cl.responses, logs)
    assert rc == 0, logs
    ag, = cl.agreements()
    assert ag.status == 401 and (ag.alg, ag.ealg) == (b"hmac-sha-1-96", b"null")
    assert (ag.peer["spi_c"], ag.peer["spi_s"]) == (70002, 70003)
    assert ag.sas()[0] == (1, "out", ag.local["port_c"], s.port, 70003)


def test_sipp_refresh_renegotiates_under_the_old_association(sipp):
    s = sipp("secagree_refresh.xml")
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base, ipsec_algs=(("hmac-sha-1-96", "null"),)), ("127.0.0.1", s.port))
    try:
        assert cl.register() == 200, cl.responses
        old = cl.agreements()[0]
        n = len(cl.sent)
        status = cl.register(refresh=True)
    finally:
        cl.close()
    rc, logs = s.finish()
    assert status == 200, (cl.responses, logs)
    assert rc == 0, logs
    assert [(st, p) for st, p, _ in cl.responses] == [(401, False), (200, True), (401, True), (200, True)]
    first, second = cl.agreements()
    assert (first.peer["spi_c"], second.peer["spi_c"]) == (80000, 90000)
    assert second.local["port_s"] == first.local["port_s"]
    assert second.local["port_c"] != first.local["port_c"]
    assert second.local["spi_c"] != first.local["spi_c"] and second.local["spi_s"] != first.local["spi_s"]
    refresh_req, final_req = cl.sent[n], cl.sent[n + 1]
    assert refresh_req[0] and refresh_req[1] == first.local["port_c"]   # under the old SAs
    assert final_req[0] and final_req[1] == second.local["port_c"]      # under the new ones
    assert ("drop", first) in cl.events


def test_sipp_494_to_protected_request_is_tamper(sipp):
    s = sipp("secagree_tamper.xml")
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base), ("127.0.0.1", s.port))
    status, rc, logs = _run(s, cl)
    assert status == 200, (cl.responses, logs)
    assert rc == 0, logs
    assert [(st, p) for st, p, _ in cl.responses] == [(494, False), (494, True), (494, False), (200, True)]
    k = cl.kinds()
    assert k.count("agreed") == 2 and "tamper" in k and "alarm" in k
    first, second = cl.agreements()
    assert first.local["spi_c"] != second.local["spi_c"] and first.local["spi_s"] != second.local["spi_s"]
    assert first.local["port_c"] != second.local["port_c"] and first.local["port_s"] == second.local["port_s"]
    offers = [d for p, _, _, d in cl.sent if not p]
    assert len(offers) == 2 and offers[0] != offers[1]


# -------------------------------------------------------------------------- Kamailio


@pytest.fixture(scope="module")
def kam():
    port, port_s = peers.free_udp_port(), peers.free_udp_port()
    k = peers.kamailio("secagree.cfg", port, {"PORT_S": port_s, "PASSWORD": PASSWORD.decode()})
    k.port_s = port_s
    yield k
    k.cleanup()


class StripIpsecRelay:
    """A man in the middle on loopback: forwards both ways and deletes the ipsec-3gpp
    Security-Server line from the first 494 it sees (a bidding-down attack, RFC 3329 5)."""

    def __init__(self, upstream):
        self.up = upstream
        self.a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.a.bind(("127.0.0.1", 0))
        self.b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.b.bind(("127.0.0.1", 0))
        self.addr = self.a.getsockname()
        self.client = None
        self.tampered = 0
        self.stop = False
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        while not self.stop:
            r, _, _ = select.select([self.a, self.b], [], [], 0.1)
            for s in r:
                data, src = s.recvfrom(65535)
                if s is self.a:
                    self.client = src
                    self.b.sendto(data, self.up)
                elif self.client:
                    if not self.tampered and data.startswith(b"SIP/2.0 494"):
                        data = re.sub(rb"Security-Server: ipsec-3gpp[^\r]*\r\n", b"", data)
                        self.tampered += 1
                    self.a.sendto(data, self.client)

    def close(self):
        self.stop = True
        self.t.join(1)
        self.a.close()
        self.b.close()


def test_kamailio_digest_with_dver(kam):
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base), ("127.0.0.1", kam.port))
    try:
        status = cl.register()
    finally:
        cl.close()
    assert status == 200, (cl.responses, kam.log_text()[-3000:])
    ag, = cl.agreements()
    assert ag.mechanism == b"digest" and ag.status == 494
    assert ag.server_lines == [
        b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=null;spi-c=11111;spi-s=22222;port-c=%d;port-s=%d" % (kam.port, kam.port_s),
        b"digest;q=0.2;d-alg=MD5;d-qop=auth"]
    assert "sec-agree: d-ver OK from sip:door@example.test" in kam.log_text()


def test_kamailio_refuses_wrong_dver(kam):
    # the same run with one hex digit of d-ver changed: Kamailio's own computation disagrees
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base, max_retries=1), ("127.0.0.1", kam.port), tamper_dver=True)
    try:
        status = cl.register()
    finally:
        cl.close()
    assert status == 494 and "failed" in cl.kinds()
    assert [(st, p) for st, p, _ in cl.responses] == [(494, False), (494, True), (494, False), (494, True)]
    assert "sec-agree: d-ver mismatch from sip:door@example.test" in kam.log_text()


def test_kamailio_ipsec_3gpp_signalling(kam):
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base, require_ipsec=True), ("127.0.0.1", kam.port))
    try:
        status = cl.register()
        n = len(cl.sent)
        # refresh: fresh SPIs and port-c offered under the old association; Kamailio's list
        # is static, so its 200 keeps the association (RFC 3329 2.5)
        refreshed = cl.register(refresh=True)
    finally:
        cl.close()
    assert status == 200, (cl.responses, kam.log_text()[-3000:])
    assert refreshed == 200, (cl.responses, kam.log_text()[-3000:])
    assert "sec-agree: refresh kept ipsec-3gpp" in cl.logs()
    prot, src, dst, data = cl.sent[n]
    assert data.count(b"\r\nSecurity-Client: ipsec-3gpp") == 2 and b"\r\nSecurity-Verify: " in data
    ag, = cl.agreements()
    assert prot and src == ag.local["port_c"] and dst == ("127.0.0.1", kam.port_s)
    assert b"spi-c=%d;" % cl.c.local["spi_c"] in data and cl.c.local["spi_c"] != ag.local["spi_c"]
    cl.sent = cl.sent[:n]
    assert ag.mechanism == b"ipsec-3gpp" and (ag.alg, ag.ealg) == (b"hmac-sha-1-96", b"null")
    assert ag.peer == {"spi_c": 11111, "spi_s": 22222, "port_c": kam.port, "port_s": kam.port_s}
    prot, src, dst, data = cl.sent[-1]
    assert prot and src == ag.local["port_c"] and dst == ("127.0.0.1", kam.port_s)
    assert b"Authorization" not in data
    assert "sec-agree: refused digest;q=0.2;d-alg=MD5;d-qop=auth: policy requires ipsec" in cl.logs()
    assert "ipsec-3gpp signalling OK from sip:door@example.test on protected port %d (source port %d)" % (
        kam.port_s, ag.local["port_c"]) in kam.log_text()


def test_kamailio_detects_stripped_list_and_client_recovers(kam):
    relay = StripIpsecRelay(("127.0.0.1", kam.port))
    base = peers.free_udp_ports(9)
    cl = ScriptedClient(_policy(base), relay.addr)
    try:
        status = cl.register()
    finally:
        cl.close()
        relay.close()
    assert relay.tampered == 1
    assert status == 200, (cl.responses, kam.log_text()[-3000:])
    assert [(st, p) for st, p, _ in cl.responses] == [(494, False), (494, True), (494, False), (200, True)]
    first, second = cl.agreements()
    assert first.server_lines == [b"digest;q=0.2;d-alg=MD5;d-qop=auth"]   # what the attacker left
    assert len(second.server_lines) == 2
    assert "sec-agree: 494 to a protected request: Security-Server list was tampered with" in cl.logs()
    assert "Security-Verify mismatch from sip:door@example.test" in kam.log_text()
