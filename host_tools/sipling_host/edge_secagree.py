"""RFC 3329 server side for `sipling edge` (sans-IO, CPython).

The edge is the device's first-hop proxy. It answers the first REGISTER with its
Security-Server list (494, or 401 with a Digest challenge as IMS proxies do), learns the
device's choice from the SA its next request arrives on, and from then on checks
Security-Verify on every protected request (section 2.3.1 step 5): it must mirror the list
the edge sent. Mechanism lists are parsed and written by the firmware's own
``sipling.secagree.mech`` (one copy of the wire format).

The list is built per negotiation from the device's bundle and what its Security-Client
offered: one ``ipsec-3gpp`` line per (alg, ealg) pair both sides support, each with its own
fresh spi-c/spi-s (so the SPI the device uses tells which line it chose), then ``ipsec-man``
when both sides have it. Every line has its own q (DESIGN.md 4 rule 2: equal q is an error).
"""
from sipling.secagree import mech

IPSEC_3GPP = b"ipsec-3gpp"
IPSEC_MAN = b"ipsec-man"
_SEC_AGREE = b"sec-agree"


class Offer:
    """One Security-Server line the edge sent and the SA set that goes with it.

    Ports and SPIs follow DESIGN.md 4's table: ``ue_*`` are the device's, ``pc/ps`` the edge's.
    """

    def __init__(self, kind, line, alg, ealg, spi_pc, spi_ps, port_pc, port_ps,
                 spi_uc, spi_us, port_uc, port_us):
        self.kind = kind
        self.line = line
        self.alg = alg
        self.ealg = ealg
        self.spi_pc = spi_pc
        self.spi_ps = spi_ps
        self.port_pc = port_pc
        self.port_ps = port_ps
        self.spi_uc = spi_uc
        self.spi_us = spi_us
        self.port_uc = port_uc
        self.port_us = port_us

    def describe(self):
        """One log phrase: mechanism, algorithms, SPIs (never keys)."""
        return "%s alg=%s ealg=%s spi-c=%d spi-s=%d (device spi-c=%d spi-s=%d)" % (
            self.kind.decode(), self.alg, self.ealg, self.spi_pc, self.spi_ps, self.spi_uc, self.spi_us)


def _q(i):
    # qvalue = "0" [ "." 0*3DIGIT ] (RFC 3261 25.1); distinct, falling with i
    return ("0.%03d" % max(900 - 10 * i, 1)).encode()


def client_mechs(msg):
    """Security-Client of a request -> list of Mech; [] when absent; ParseError if unusable."""
    lines = msg.header_lines("Security-Client")
    if not lines:
        return []
    return mech.parse_lines(lines)


def build_offers(dev, client, ports, new_spi):
    """Offers for device `dev` (an edge_bundle.Device) given the client's Mech list.

    ports = (port_pc, port_ps) of the edge for ipsec-3gpp; new_spi() -> a fresh unused SPI.
    Returns a list of Offer, edge preference first; [] when nothing is in common.
    """
    offers = []
    want = {}
    man_offered = False
    for m in client:
        if m.name == IPSEC_3GPP:
            alg = (m.get(b"alg") or b"").lower().decode()
            ealg = (m.get(b"ealg") or b"null").lower().decode()
            try:
                ue = (mech.parse_uint(m.get(b"spi-c") or m.get(b"spi") or b"", 0xFFFFFFFF),
                      mech.parse_uint(m.get(b"spi-s") or b"", 0xFFFFFFFF),
                      mech.parse_uint(m.get(b"port-c") or m.get(b"port1") or b"", 65535),
                      mech.parse_uint(m.get(b"port-s") or m.get(b"port2") or b"", 65535))
            except mech.ParseError:
                continue  # a line without SPIs/ports cannot be initiated (rule 3)
            want.setdefault((alg, ealg), ue)
        elif m.name == IPSEC_MAN:
            man_offered = True
    if dev.ik is not None:
        for alg, ealg in dev.algs:
            ue = want.get((alg, ealg))
            if ue is None:
                continue
            spi_pc, spi_ps = new_spi(), new_spi()
            line = mech.serialize(IPSEC_3GPP, [
                (b"q", _q(len(offers))), (b"prot", b"esp"), (b"mod", b"trans"),
                (b"spi-c", spi_pc), (b"spi-s", spi_ps), (b"port-c", ports[0]), (b"port-s", ports[1]),
                (b"alg", alg.encode()), (b"ealg", ealg.encode())])
            offers.append(Offer(IPSEC_3GPP, line, alg, ealg, spi_pc, spi_ps, ports[0], ports[1],
                                ue[0], ue[1], ue[2], ue[3]))
    if dev.man is not None and man_offered:
        offers.append(man_offer(dev, len(offers)))
    return offers


def man_offer(dev, i=0):
    """The ipsec-man line (RFC 3329 defines no parameters for it) and its provisioned SAs."""
    m = dev.man
    line = mech.serialize(IPSEC_MAN, [(b"q", _q(i))])
    return Offer(IPSEC_MAN, line, m["alg"], m["ealg"], m["spi_pc"], m["spi_ps"], m["port_pc"],
                 m["port_ps"], m["spi_uc"], m["spi_us"], m["port_uc"], m["port_us"])


def _squeeze(b):
    return b"".join(bytes(b).split())


def verify_ok(msg, offers):
    """Security-Verify of a protected request mirrors the list sent (section 2.3.1 step 5).

    All Security-Verify header values joined with ',' must equal the Security-Server lines
    joined with ',', linear white space ignored (the mechanisms hold no quoted strings).
    """
    lines = msg.header_lines("Security-Verify")
    if not lines:
        return False
    got = _squeeze(b",".join(bytes(x) for x in lines))
    return got == _squeeze(b",".join(o.line for o in offers))


def wants_secagree(msg):
    """The request asks for sec-agree (Require or Proxy-Require) or offers Security-Client."""
    tags = mech.option_tags(msg.header_lines("Require")) | mech.option_tags(msg.header_lines("Proxy-Require"))
    return _SEC_AGREE in tags or bool(msg.header_lines("Security-Client"))


def strip_for_proxy(msg):
    """Remove what only the first hop needs before relaying (RFC 3329 2.3.1 step 5 / 2.6):
    Security-Client/-Verify/-Server and `sec-agree` from Require and Proxy-Require."""
    for name in ("Security-Client", "Security-Verify", "Security-Server"):
        msg.remove(name)
    for name in ("Require", "Proxy-Require"):
        lines = msg.header_lines(name)
        if not lines:
            continue
        keep = [t for t in b",".join(bytes(x) for x in lines).split(b",")
                if t.strip() and t.strip().lower() != _SEC_AGREE]
        msg.remove(name)
        if keep:
            msg.add(name, b", ".join(t.strip() for t in keep))
