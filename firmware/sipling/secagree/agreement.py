# The result of an RFC 3329 agreement: what the app needs to start the chosen mechanism
# (2.4) and the Security-Verify every later request carries (2.3.1, DESIGN.md 4 rule 4).

from sipling.secagree import mech as _m
from sipling.secagree import policy as _p

_LWS = b" \t\r\n"


class Agreement:
    """mechanism: b"ipsec-3gpp" / b"ipsec-man" / b"digest" / b"tls"; q (thousandths);
    server_lines: Security-Server header values exactly as received, in order;
    local: our spi_c, spi_s, port_c, port_s (those offered for this agreement);
    peer: the server's (ipsec-3gpp only, else None); alg, ealg, prot, mod (ipsec-3gpp);
    d_alg, d_qop (digest, or None); refused: (raw, reason) for the log; status: the
    response code that carried the list (494, 421, 401, 407)."""

    def __init__(self, chosen, ip, server_lines, local, refused, status):
        self.mechanism = chosen.name
        self.q = chosen.q
        self.chosen = chosen
        self.server_lines = [bytes(x) for x in server_lines]
        self.local = dict(local)
        self.refused = refused
        self.status = status
        self.peer = None
        self.alg = self.ealg = self.prot = self.mod = None
        if ip is not None:
            self.peer = {"spi_c": ip["spi_c"], "spi_s": ip["spi_s"],
                         "port_c": ip["port_c"], "port_s": ip["port_s"]}
            self.alg = ip["alg"]
            self.ealg = ip["ealg"]
            self.prot = ip["prot"]
            self.mod = ip["mod"]
        self.d_alg = chosen.params.get(b"d-alg") if chosen.name == _p.DIGEST else None
        self.d_qop = chosen.params.get(b"d-qop") if chosen.name == _p.DIGEST else None

    def describe(self):
        """One log line's worth; never keys."""
        m = self.mechanism.decode()
        if self.mechanism == _p.IPSEC_3GPP:
            p = self.peer
            return ("%s alg=%s ealg=%s ours spi-c=%d spi-s=%d port-c=%d port-s=%d "
                    "theirs spi-c=%d spi-s=%d port-c=%d port-s=%d" % (
                        m, self.alg.decode(), self.ealg.decode(),
                        self.local["spi_c"], self.local["spi_s"], self.local["port_c"],
                        self.local["port_s"], p["spi_c"], p["spi_s"], p["port_c"], p["port_s"]))
        if self.mechanism == _p.DIGEST:
            return "%s d-alg=%s d-qop=%s" % (
                m, (self.d_alg or b"-").decode(), (self.d_qop or b"-").decode())
        return m

    def sas(self):
        """The four ipsec-3gpp SAs (DESIGN.md 4 table; TS 33.203 7.1) as tuples
        (n, direction, src_port, dst_port, spi); the SPI is chosen by the receiver."""
        if self.mechanism != _p.IPSEC_3GPP:
            return []
        u = self.local
        p = self.peer
        return [
            (1, "out", u["port_c"], p["port_s"], p["spi_s"]),
            (2, "in", p["port_c"], u["port_s"], u["spi_s"]),
            (3, "in", p["port_s"], u["port_c"], u["spi_c"]),
            (4, "out", u["port_s"], p["port_c"], p["spi_c"]),
        ]

    def sa_args(self):
        """Keyword arguments for sipling.esp SADB.install_3gpp (everything but the keys,
        which the app takes from its key store): SPIs, ports, alg, ealg as str."""
        if self.mechanism != _p.IPSEC_3GPP:
            raise ValueError("sa_args is for ipsec-3gpp")
        u = self.local
        p = self.peer
        return {"our_spi_c": u["spi_c"], "our_spi_s": u["spi_s"],
                "our_port_c": u["port_c"], "our_port_s": u["port_s"],
                "their_spi_c": p["spi_c"], "their_spi_s": p["spi_s"],
                "their_port_c": p["port_c"], "their_port_s": p["port_s"],
                "alg": self.alg.decode(), "ealg": self.ealg.decode()}

    def inbound_ports(self):
        """UDP responses are accepted on both our ports: servers disagree where they go."""
        return (self.local["port_c"], self.local["port_s"])

    def challenge_overrides(self):
        """RFC 3329 2.4: d-alg and d-qop replace algorithm and qop of the Digest
        challenge. Dict with the keys present in the Security-Server line."""
        out = {}
        if self.d_alg is not None:
            out["algorithm"] = self.d_alg
        if self.d_qop is not None:
            out["qop"] = self.d_qop
        return out

    def d_ver(self, username, realm, password, nonce, method, uri, cnonce=None, nc=None,
              body=b"", algorithm=None, qop=None):
        """RFC 3329 2.2 d-ver (32 lower-case hex bytes) over our Security-Server lines,
        with d-alg/d-qop taking precedence over the challenge's algorithm/qop."""
        # imported here: d-ver (and sip.digest under it) is only needed once digest is agreed
        from sipling.secagree import dver as _d
        alg = self.d_alg or algorithm
        q = self.d_qop or qop
        return _d.d_ver(self.server_lines, alg, username, realm, password, nonce, method,
                        uri, q, cnonce, nc, body)

    def verify_headers(self, d_ver=None):
        """Security-Verify lines mirroring Security-Server byte for byte (2.3.1), plus
        Require and Proxy-Require sec-agree and Supported sec-agree. With `d_ver` (digest
        only) the digest item gets ;d-ver="..." appended in place (2.4)."""
        lines = self.server_lines
        if d_ver is not None:
            if self.mechanism != _p.DIGEST:
                raise ValueError("d-ver is for the digest mechanism only")
            lines = self._with_dver(d_ver)
        out = [(b"Security-Verify", v) for v in lines]
        out.append((b"Require", b"sec-agree"))
        out.append((b"Proxy-Require", b"sec-agree"))
        out.append((b"Supported", b"sec-agree"))
        return out

    def _with_dver(self, d_ver):
        # Find the chosen item among the lines; only that item changes.
        out = list(self.server_lines)
        for i in range(len(out)):
            parts = _m.split_outside_quotes(out[i], 0x2C)
            for j in range(len(parts)):
                if _m._strip(parts[j]) == self.chosen.raw:
                    p = parts[j]
                    k = len(p)
                    while k and p[k - 1] in _LWS:
                        k -= 1
                    parts[j] = b"".join((p[:k], b';d-ver="', d_ver, b'"', p[k:]))
                    out[i] = b",".join(parts)
                    return out
        raise ValueError("chosen mechanism not found in the Security-Server lines")
