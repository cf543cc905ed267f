# Choosing from a Security-Server list (RFC 3329 sections 2.2, 2.3.1, 2.4, Appendix A;
# DESIGN.md 4 client rules 2, 3, 6). Pure functions over parsed lists; no I/O.
#
# Rules held here:
# - "All the security mechanisms MUST have different q values. It is an error to provide
#   two mechanisms with the same q value" (2.2): equal q anywhere in the list aborts; a
#   mechanism without q cannot be ranked, so it aborts too.
# - "choose the security mechanism in the server's list with the highest q value among
#   all the mechanisms that are known to the client" (2.3.1), minus what local policy
#   declines (2.3.1 last paragraph). For ipsec-3gpp every line is its own candidate and
#   only an (alg, ealg) pair we offered is acceptable.
# - Missing information for the chosen mechanism aborts (2.3.1 "MUST consider the current
#   security agreement process aborted"); we never fall through to a weaker candidate.

from micropython import const

from sipling.secagree import mech as _m
from sipling.secagree import policy as _p


class Abort(Exception):
    """The agreement is aborted; str(e) says why (for the log)."""

    def __init__(self, msg):
        super().__init__(msg)


_SPI_MIN = const(256)  # RFC 4303 2.1: SPIs 1-255 are reserved, 0 is never sent


def short(raw, n=60):
    """A peer's bytes for a log line: bounded (values may exceed 1 KB) and printable ASCII,
    anything else as \\xNN, so neither invalid UTF-8 nor a cut multi-byte character raises."""
    s = "".join(chr(c) if 32 <= c < 127 else "\\x%02x" % c for c in raw[:n])
    return s + "..." if len(raw) > n else s


def qstr(q):
    if q is None:
        return "none"
    return "%d.%03d" % (q // 1000, q % 1000)


def ipsec_params(m):
    """ipsec-3gpp parameters of one Mech as a dict (TS 33.203 names, RFC 3329 App. A
    spelling folded in): alg, ealg, prot, mod (lower-case bytes; defaults prot=esp,
    mod=trans, ealg=null per Appendix A) and spi_c, spi_s, port_c, port_s (ints or None).

    Appendix A has one inbound SPI `spi`, `port1` (inbound destination = port-s) and an
    optional `port2` (outbound source = port-c): spi fills both spi_c and spi_s (one
    inbound SA covering both ports), port2 defaults to port1. Raises ParseError on bad
    numbers or mixed spellings."""
    g = m.params.get
    r = {
        "alg": g(b"alg", b"").lower() or None,
        "ealg": g(b"ealg", b"null").lower(),
        "prot": g(b"prot", b"esp").lower(),
        "mod": g(b"mod", b"trans").lower(),
    }
    ts = b"spi-c" in m.params or b"spi-s" in m.params or b"port-c" in m.params or b"port-s" in m.params
    app_a = b"spi" in m.params or b"port1" in m.params or b"port2" in m.params
    if ts and app_a:
        raise _m.ParseError("ipsec-3gpp mixes spi-c/spi-s/port-c/port-s with spi/port1/port2")
    if app_a:
        names = ((b"spi", "spi_s"), (b"spi", "spi_c"), (b"port1", "port_s"), (b"port2", "port_c"))
    else:
        names = ((b"spi-c", "spi_c"), (b"spi-s", "spi_s"), (b"port-c", "port_c"), (b"port-s", "port_s"))
    for key, field in names:
        v = g(key)
        if v is None:
            r[field] = None
        elif field[0] == "s":
            r[field] = _m.parse_uint(v, 0xFFFFFFFF)
        else:
            r[field] = _m.parse_uint(v, 65535)
            if r[field] == 0:
                raise _m.ParseError("port 0")
    if app_a and r["port_c"] is None:
        r["port_c"] = r["port_s"]
    return r


def _check_q(mechs):
    seen = {}
    for x in mechs:
        if x.q is None:
            raise Abort("Security-Server %s has no q: cannot rank it (RFC 3329 2.2)" % short(x.raw))
        if x.q in seen:
            raise Abort("Security-Server lists q=%s twice (%s and %s): RFC 3329 2.2 says this is an error"
                        % (qstr(x.q), short(seen[x.q].raw), short(x.raw)))
        seen[x.q] = x


def _candidate(x, policy):
    """None if `x` is acceptable, else why it is refused."""
    why = policy.refusal(x.name)
    if why:
        return why
    if x.name == _p.IPSEC_3GPP:
        try:
            ip = ipsec_params(x)
        except _m.ParseError as e:
            return "unparseable (%s)" % e
        if ip["prot"] != b"esp":
            return "prot=%s not supported (ESP only)" % short(ip["prot"])
        if ip["mod"] != b"trans":
            return "mod=%s not supported (transport only)" % short(ip["mod"])
        if ip["alg"] is not None and (ip["alg"], ip["ealg"]) not in policy.ipsec_algs:
            return "alg=%s ealg=%s was not offered" % (short(ip["alg"]), short(ip["ealg"]))
        if b"spi" in x.params:
            # Appendix A: one inbound SPI for both server ports; our SA database keeps the
            # four TS 33.203 SAs with distinct SPIs (DESIGN.md 4), so this form cannot run
            return "single-SPI form (RFC 3329 App. A spi/port1/port2) cannot be set up as four SAs"
        for k in ("spi_c", "spi_s"):
            v = ip[k]
            if v is not None and v < _SPI_MIN:
                return "%s=%d is reserved (RFC 4303 2.1: SPI 0-255 cannot name an SA)" % (k.replace("_", "-"), v)
        if ip["spi_c"] is not None and ip["spi_c"] == ip["spi_s"]:
            return "spi-c equals spi-s (%d): the four SAs need distinct SPIs" % ip["spi_c"]
    elif x.name == _p.DIGEST:
        a = x.params.get(b"d-alg")
        if a is not None and a.lower() not in _p.D_ALGS:
            return "d-alg=%s not supported" % short(a)
        q = x.params.get(b"d-qop")
        if q is not None and q.lower() not in _p.D_QOPS:
            return "d-qop=%s not supported" % short(q)
    return None


def choose(lines, policy, has_challenge=False):
    """Pick from the Security-Server header lines (bytes values as received).

    Returns (chosen Mech, ipsec params dict or None, refused list of (raw, reason)).
    Raises Abort with the reason when the list is unusable, nothing is acceptable, or
    the chosen mechanism lacks what it needs (`has_challenge`: the response carries a
    Digest WWW-Authenticate/Proxy-Authenticate)."""
    try:
        mechs = _m.parse_lines(lines)
    except _m.ParseError as e:
        raise Abort("unparseable Security-Server (%s)" % e)
    _check_q(mechs)
    refused = []
    best = None
    for x in mechs:
        why = _candidate(x, policy)
        if why:
            refused.append((x.raw, why))
        elif best is None or x.q > best.q:
            best = x
    if best is None:
        raise Abort("no acceptable mechanism in Security-Server: " +
                    "; ".join("%s: %s" % (short(r), w) for r, w in refused))
    for x in mechs:
        if x is not best and _candidate(x, policy) is None:
            refused.append((x.raw, "lower q than %s" % qstr(best.q)))
    ip = None
    if best.name == _p.IPSEC_3GPP:
        ip = ipsec_params(best)
        missing = [k for k in ("alg", "spi_c", "spi_s", "port_c", "port_s") if ip[k] is None]
        if missing:
            raise Abort("chosen ipsec-3gpp lacks %s (RFC 3329 2.3.1: agreement aborted)"
                        % ",".join(k.replace("_", "-") for k in missing))
    elif best.name == _p.DIGEST and not has_challenge:
        raise Abort("chosen digest but the response has no Digest challenge "
                    "(RFC 3329 2.3.1: agreement aborted)")
    return best, ip, refused
