# RFC 3329 section 2.2 digest-verify (d-ver) and the RFC 2617 request-digest it reuses.
#   digest-verify = "d-ver" EQUAL LDQUOT 32LHEX RDQUOT
# "counted exactly the same way as request-digest in [RFC 2617] except that the
# Security-Server header field is included in the A2 parameter":
#   qop auth or absent: A2 = Method ":" digest-uri-value ":" security-server
#   qop auth-int:       A2 = Method ":" digest-uri-value ":" H(entity-body) ":" security-server
# "All linear white spaces in the Security-Server header field MUST be replaced by a
# single SP before calculating or interpreting the digest-verify parameter."
# Several Security-Server header lines form one field value joined by "," (RFC 3261
# section 7.3.1), so security-server is every line's value in order, joined with ",",
# LWS folded. Worked example: tests/vectors/secagree/README.md.

from sipling.sip import digest as _dg
from sipling.sip.digest import DigestError

_LWS = b" \t\r\n"


def fold_lws(b):
    """Every run of LWS (SP, HTAB, CR, LF: RFC 3261 25.1 folding) -> one SP; ends trimmed."""
    out = []
    sp = False
    for c in bytes(b):
        if c in _LWS:
            sp = True
            continue
        if sp and out:
            out.append(0x20)
        sp = False
        out.append(c)
    return bytes(out)


def security_server_value(lines):
    """The Security-Server field value as A2 takes it: lines joined by ",", LWS folded."""
    return fold_lws(b",".join(bytes(x).strip(_LWS) for x in lines))


def H(data):
    """RFC 2617 3.2.1 H() for MD5 and MD5-sess (d-alg's default): lower-case hex of MD5."""
    return _dg.H(b"MD5", data)


def _b(x):
    if x is None:
        return b""
    return x if isinstance(x, bytes) else str(x).encode()


def request_digest(algorithm, username, realm, password, nonce, method, uri, qop=None,
                   cnonce=None, nc=None, body=b"", security_server=None):
    """RFC 2617 3.2.2.1 request-digest (lower-case hex bytes), computed with sip.digest's
    H/KD/A1 (MD5, SHA-256 and their -sess forms). With `security_server` (the folded field
    value) appended to A2 it is RFC 3329 2.2 d-ver."""
    alg = _dg.canonical_alg(_b(algorithm or b"MD5"))
    if alg is None:
        raise DigestError("unsupported digest algorithm " + _b(algorithm).lower().decode())
    qop = _b(qop).lower() if qop else None
    if qop not in (None, b"auth", b"auth-int"):
        raise DigestError("unsupported qop " + qop.decode())
    if qop and (not cnonce or not nc):
        raise DigestError("qop needs cnonce and nc")
    if alg.lower().endswith(b"-sess") and not cnonce:
        raise DigestError(alg.decode() + " needs cnonce")
    h1 = _dg.ha1(alg, _b(username), _b(realm), _b(password), _b(nonce), _b(cnonce))
    a2 = [_b(method), _b(uri)]
    if qop == b"auth-int":
        a2.append(_dg.H(alg, _b(body)))
    if security_server is not None:
        a2.append(_b(security_server))
    h2 = _dg.H(alg, b":".join(a2))
    return _dg.response_digest(alg, h1, _b(nonce), _b(nc) if qop else None,
                               _b(cnonce) if qop else None, qop, h2)


def d_ver(server_lines, algorithm, username, realm, password, nonce, method, uri, qop=None,
          cnonce=None, nc=None, body=b""):
    """RFC 3329 2.2 d-ver over the Security-Server header lines as received."""
    return request_digest(algorithm, username, realm, password, nonce, method, uri, qop,
                          cnonce, nc, body, security_server_value(server_lines))
