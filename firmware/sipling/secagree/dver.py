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

import hashlib
import binascii

_LWS = b" \t\r\n"


class DigestError(ValueError):
    def __init__(self, msg):
        super().__init__(msg)


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


def _hex(h):
    return binascii.hexlify(h.digest())


def H(data):
    """RFC 2617 3.2.1 H() for MD5 and MD5-sess: lower-case hex of MD5."""
    return _hex(hashlib.md5(data))


def _b(x):
    if x is None:
        return b""
    return x if isinstance(x, bytes) else str(x).encode()


def request_digest(algorithm, username, realm, password, nonce, method, uri, qop=None,
                   cnonce=None, nc=None, body=b"", security_server=None):
    """RFC 2617 3.2.2.1 request-digest (32 lower-case hex bytes). With `security_server`
    (the folded field value) it is RFC 3329 2.2 d-ver."""
    alg = _b(algorithm or b"MD5").lower()
    if alg not in (b"md5", b"md5-sess"):
        raise DigestError("unsupported digest algorithm " + alg.decode())
    qop = _b(qop).lower() if qop else None
    if qop not in (None, b"auth", b"auth-int"):
        raise DigestError("unsupported qop " + qop.decode())
    if qop and (not cnonce or not nc):
        raise DigestError("qop needs cnonce and nc")
    ha1 = H(b":".join((_b(username), _b(realm), _b(password))))
    if alg == b"md5-sess":
        # RFC 2617 3.2.2.2: A1 = H(unq(username-value) ":" unq(realm-value) ":" passwd)
        #                        ":" unq(nonce-value) ":" unq(cnonce-value)
        if not cnonce:
            raise DigestError("MD5-sess needs cnonce")
        ha1 = H(b":".join((ha1, _b(nonce), _b(cnonce))))
    a2 = [_b(method), _b(uri)]
    if qop == b"auth-int":
        a2.append(H(_b(body)))
    if security_server is not None:
        a2.append(_b(security_server))
    ha2 = H(b":".join(a2))
    if qop:
        data = b":".join((_b(nonce), _b(nc), _b(cnonce), qop, ha2))
    else:
        data = b":".join((_b(nonce), ha2))
    # KD(secret, data) = H(concat(secret, ":", data))
    return H(b":".join((ha1, data)))


def d_ver(server_lines, algorithm, username, realm, password, nonce, method, uri, qop=None,
          cnonce=None, nc=None, body=b""):
    """RFC 3329 2.2 d-ver over the Security-Server header lines as received."""
    return request_digest(algorithm, username, realm, password, nonce, method, uri, qop,
                          cnonce, nc, body, security_server_value(server_lines))
