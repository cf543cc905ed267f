# RFC 3329 sec-mechanism lists: parse (Security-Server/-Client/-Verify) and serialize.
# Grammar (RFC 3329 section 2.2, restated in DESIGN.md 4; RFC 3261 section 25.1 for
# token, quoted-string, SEMI, COMMA, EQUAL, LWS):
#   security-server = "Security-Server" HCOLON sec-mechanism *(COMMA sec-mechanism)
#   sec-mechanism   = mechanism-name *(SEMI mech-parameters)
#   mech-parameters = preference / digest-algorithm / digest-qop / digest-verify / extension
#   preference      = "q" EQUAL qvalue
#   qvalue          = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
#   extension       = generic-param = token [ EQUAL gen-value ]
#   gen-value       = token / host / quoted-string
# No regex (DESIGN.md 5.1): find/split on bytes. Names compare case-insensitively
# (RFC 3261 section 7.3.1); values keep the bytes they had.


class ParseError(ValueError):
    def __init__(self, msg):
        super().__init__(msg)


# RFC 3261 section 25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
_TOKEN_EXTRA = b"-.!%*_+`'~"
# gen-value also admits host (IPv6 reference "[..:..]") in generic-param.
_HOST_EXTRA = b"[]:"
_LWS = b" \t\r\n"


def _is_token(b, extra=b""):
    if not b:
        return False
    for c in b:
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122):
            continue
        if c in _TOKEN_EXTRA or c in extra:
            continue
        return False
    return True


def _strip(b):
    # LWS = [*WSP CRLF] 1*WSP (RFC 3261 25.1); a header line handed to us may still hold
    # folding CRLFs, so strip CR and LF as well as SP/HTAB.
    i = 0
    n = len(b)
    while i < n and b[i] in _LWS:
        i += 1
    while n > i and b[n - 1] in _LWS:
        n -= 1
    return b[i:n]


def _lower(b):
    return bytes(b).lower()


def split_outside_quotes(value, sep):
    """Split bytes `value` on byte `sep` (an int) where it is not inside a quoted-string.

    quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE (RFC 3261 25.1); a
    backslash escapes the next byte inside quotes. Unterminated quotes raise ParseError.
    """
    parts = []
    start = 0
    inq = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if inq:
            if c == 0x5C:  # backslash: quoted-pair
                i += 2
                continue
            if c == 0x22:
                inq = False
        elif c == 0x22:
            inq = True
        elif c == sep:
            parts.append(value[start:i])
            start = i + 1
        i += 1
    if inq:
        raise ParseError("unterminated quoted-string")
    parts.append(value[start:])
    return parts


def _unquote(v):
    # quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F) (RFC 3261 25.1)
    if len(v) < 2 or v[0] != 0x22 or v[-1] != 0x22:
        raise ParseError("bad quoted-string")
    inner = v[1:-1]
    if inner.find(b"\\") < 0:
        return inner
    out = []
    i = 0
    while i < len(inner):
        c = inner[i]
        if c == 0x5C and i + 1 < len(inner):
            i += 1
            c = inner[i]
        out.append(c)
        i += 1
    return bytes(out)


def parse_qvalue(v):
    """qvalue (RFC 3261 25.1) -> thousandths 0..1000; ParseError otherwise."""
    if not v or len(v) > 5:
        raise ParseError("bad q")
    head = v[0]
    if head not in (0x30, 0x31):
        raise ParseError("bad q")
    whole = head - 0x30
    frac = b""
    if len(v) > 1:
        if v[1] != 0x2E:
            raise ParseError("bad q")
        frac = v[2:]
    for c in frac:
        if not 0x30 <= c <= 0x39:
            raise ParseError("bad q")
    if whole == 1:
        for c in frac:
            if c != 0x30:
                raise ParseError("bad q")
        return 1000
    t = 0
    m = 100
    for c in frac:
        t += (c - 0x30) * m
        m //= 10
    return t


def parse_uint(v, maxval):
    """1*DIGIT within 0..maxval (RFC 3329 Appendix A spivalue / port); ParseError otherwise."""
    if not v or len(v) > 10:
        raise ParseError("bad number")
    r = 0
    for c in v:
        if not 0x30 <= c <= 0x39:
            raise ParseError("bad number")
        r = r * 10 + c - 0x30
    if r > maxval:
        raise ParseError("number out of range")
    return r


class Mech:
    """One sec-mechanism. name: lower-case bytes; params: dict lower-case name -> value
    bytes (quotes removed; b"" for a bare name); order: parameter names in received order;
    q: thousandths or None; raw: the item's bytes as received (LWS at both ends removed)."""

    def __init__(self, name, params, order, q, raw):
        self.name = name
        self.params = params
        self.order = order
        self.q = q
        self.raw = raw

    def get(self, key, default=None):
        return self.params.get(key, default)

    def __repr__(self):
        return "Mech(%r, q=%r, %r)" % (self.name, self.q, self.params)


def parse_mech(item):
    """sec-mechanism = mechanism-name *(SEMI mech-parameters) (RFC 3329 2.2)."""
    raw = _strip(item)
    if not raw:
        raise ParseError("empty mechanism")
    pieces = split_outside_quotes(raw, 0x3B)  # ';'
    name = _strip(pieces[0])
    if not _is_token(name):
        raise ParseError("bad mechanism-name")
    params = {}
    order = []
    q = None
    for p in pieces[1:]:
        k, eq, v = p.partition(b"=")
        k = _lower(_strip(k))
        if not _is_token(k):
            raise ParseError("bad parameter name")
        if k in params:
            raise ParseError("repeated parameter " + k.decode())
        if eq:
            v = _strip(v)
            if v and v[0] == 0x22:
                v = _unquote(v)
            elif not _is_token(v, _HOST_EXTRA):
                raise ParseError("bad parameter value")
        else:
            v = b""
        if k == b"q":
            q = parse_qvalue(v)
        params[k] = v
        order.append(k)
    return Mech(_lower(name), params, order, q, raw)


def parse_lines(lines):
    """Every header line's value (bytes, as received, in order) -> list of Mech.

    One header per mechanism and one comma-joined line give the same list (RFC 3261
    section 7.3.1). Any unparseable item raises ParseError: the list is unusable.
    """
    out = []
    for line in lines:
        for item in split_outside_quotes(bytes(line), 0x2C):  # ','
            out.append(parse_mech(item))
    if not out:
        raise ParseError("empty list")
    return out


def serialize(name, params):
    """sec-mechanism from name bytes and a list of (name, value) pairs; value None -> bare."""
    parts = [name]
    for k, v in params:
        parts.append(b";")
        parts.append(k)
        if v is not None:
            parts.append(b"=")
            parts.append(v if isinstance(v, bytes) else str(v).encode())
    return b"".join(parts)


def option_tags(lines):
    """Require/Supported/Proxy-Require lines -> set of lower-case option tags (RFC 3261 20.32)."""
    tags = set()
    for line in lines:
        for t in bytes(line).split(b","):
            t = _strip(t)
            if t:
                tags.add(_lower(t))
    return tags
