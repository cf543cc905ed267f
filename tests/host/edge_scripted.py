"""A scripted device for the edge tests, built from the firmware cores (sans-IO).

It plays the client side of RFC 3329 by hand (so tests can misbehave on purpose): a plain
REGISTER with Security-Client, a choice among the Security-Server lines, the four SAs
installed with the firmware SADB, and protected requests/responses through sipling.esp.
"""
import os

from sipling.esp import sa as esa
from sipling.esp import udp as eudp
from sipling.secagree import mech
from sipling.sip.message import request, response
from sipling.sip.parser import parse

AOR = "sip:door@example.test"


def device_json(ik, ck, algs, man=None, aor=AOR, encap_port=4501):
    d = {"identity": {"aor": aor, "auth_user": aor[4:].split("@")[0], "password": "pw-" + ik.hex()[:6]},
         "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
         "ipsec": {"carrier": "udp-encap", "encap_port": encap_port, "peer_encap_port": 4500,
                   "ik": ik.hex(), "ck": ck.hex(), "algs": [list(p) for p in algs]}}
    if man:
        d["ipsec_man"] = man
    return d


def man_section(ik, ck, alg="hmac-sha-1-96", ealg="aes-cbc"):
    return {"alg": alg, "ealg": ealg, "ik": ik.hex(), "ck": ck.hex(),
            "spi_uc": 1001, "spi_us": 1002, "spi_pc": 2001, "spi_ps": 2002,
            "port_uc": 5062, "port_us": 5064, "port_pc": 5066, "port_ps": 5068}


class Device:
    def __init__(self, ik, ck, algs, man=None, aor=AOR, host="127.0.0.1", edge_host="127.0.0.1"):
        self.ik, self.ck, self.algs, self.man = ik, ck, algs, man
        self.aor = aor.encode()
        self.host, self.edge_host = host, edge_host
        self.port_c, self.port_s = 5062, 5064
        self.spi_c = int.from_bytes(os.urandom(4), "big") | 0x100
        self.spi_s = self.spi_c ^ 1
        self.db = None
        self.pair = None
        self.server_lines = None
        self.cseq = 0
        self.chosen = None

    # -- plain first REGISTER (RFC 3329 2.3.1 step 1) -------------------------------
    def first_register(self, mechanisms=("ipsec-3gpp", "ipsec-man")):
        hs = self._common(b"REGISTER")
        for name in mechanisms:
            if name == "ipsec-3gpp":
                for alg, ealg in self.algs:
                    hs.append((b"Security-Client", mech.serialize(b"ipsec-3gpp", [
                        (b"prot", b"esp"), (b"mod", b"trans"), (b"spi-c", self.spi_c),
                        (b"spi-s", self.spi_s), (b"port-c", self.port_c), (b"port-s", self.port_s),
                        (b"alg", alg.encode()), (b"ealg", ealg.encode())])))
            else:
                hs.append((b"Security-Client", name.encode()))
        hs += [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree"), (b"Supported", b"sec-agree")]
        hs.append((b"Contact", b"<sip:door@%s:%d>" % (self.host.encode(), self.port_s)))
        hs.append((b"Expires", b"600"))
        return request(b"REGISTER", b"sip:example.test", hs).serialize()

    def _common(self, method, to=None):
        self.cseq += 1
        br = b"z9hG4bK-dev" + os.urandom(6).hex().encode()
        return [(b"Via", b"SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.host.encode(), self.port_s, br)),
                (b"Max-Forwards", b"70"),
                (b"From", b"<" + self.aor + b">;tag=dev1"),
                (b"To", b"<" + (to or self.aor) + b">"),
                (b"Call-ID", b"call-" + method.lower() + b"-%d@dev" % self.cseq if method != b"REGISTER"
                 else b"reg-call@dev"),
                (b"CSeq", b"%d %s" % (self.cseq, method))]

    # -- choice and SAs (step 3/4) ------------------------------------------------
    def choose(self, resp_bytes, kind, alg=None, ealg=None, tamper=None):
        """Pick line `kind` (+ alg/ealg) from the 494/401; install SAs. `tamper(lines)` models
        an attacker who changed the list on the way (the device sees the changed list)."""
        r = parse(resp_bytes)
        lines = [bytes(x) for x in r.header_lines("Security-Server")]
        if tamper:
            lines = tamper(lines)
        self.server_lines = lines
        for m in mech.parse_lines(lines):
            if m.name.decode() != kind:
                continue
            if kind == "ipsec-3gpp" and (m.get(b"alg").decode(), m.get(b"ealg").decode()) != (alg, ealg):
                continue
            self.chosen = m
            break
        else:
            raise AssertionError("no %s %s/%s line in %r" % (kind, alg, ealg, lines))
        self.db = esa.SADB(os.urandom, mtu=65535)
        if kind == "ipsec-3gpp":
            g = self.chosen.get
            self.pair = self.db.install_3gpp(
                self.spi_c, self.spi_s, self.port_c, self.port_s,
                int(g(b"spi-c")), int(g(b"spi-s")), int(g(b"port-c")), int(g(b"port-s")),
                alg, ealg, self.ik, self.ck)
        else:
            m = self.man
            conf = {"our_spi_c": m["spi_uc"], "our_spi_s": m["spi_us"], "our_port_c": m["port_uc"],
                    "our_port_s": m["port_us"], "their_spi_c": m["spi_pc"], "their_spi_s": m["spi_ps"],
                    "their_port_c": m["port_pc"], "their_port_s": m["port_ps"], "alg": m["alg"],
                    "ealg": m["ealg"], "ik": bytes.fromhex(m["ik"]), "ck": bytes.fromhex(m["ck"])}
            self.pair = self.db.install_manual(conf, lambda spi: 0, lambda spi, v: None)
        return r

    def protected_request(self, method, to=None, body=b"", extra=(), verify=True):
        hs = self._common(method, to)
        if verify:
            hs += [(b"Security-Verify", x) for x in self.server_lines]
        hs += [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree")]
        if method == b"REGISTER":
            hs += [(b"Contact", b"<sip:door@%s:%d>" % (self.host.encode(), self.port_s)), (b"Expires", b"600")]
        hs += list(extra)
        if body:
            hs.append((b"Content-Type", b"text/plain"))
        uri = b"sip:example.test" if method == b"REGISTER" else (to or self.aor)
        return self.seal_c(request(method, uri, hs, body).serialize())

    def seal_c(self, data):
        # SA1: our port-c -> edge port-s
        o = self.pair.out_c
        return bytes(eudp.protect_udp(o, self.host, self.edge_host, o.sport, o.dport, data))

    def seal_s(self, data):
        # SA4: our port-s -> edge port-c
        o = self.pair.out_s
        return bytes(eudp.protect_udp(o, self.host, self.edge_host, o.sport, o.dport, data))

    def open(self, pkt):
        """(sport, dport, Message) or None (dropped: see self.db.drop_counts())."""
        r = eudp.open_udp(self.db, bytes(pkt))
        if r is None:
            return None
        return r[1], r[2], parse(bytes(r[3]))

    def answer(self, req, status=200, reason=b"OK"):
        return self.seal_s(response(req, status, reason, to_tag=b"devtag").serialize())
