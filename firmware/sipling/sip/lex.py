# Lexical pieces of the SIP grammar shared by the URI, address and Via parsers:
# tokens, quoted strings, %-escapes, folding, comma/semicolon lists, generic-params,
# hostport. RFC 3261 section 7.3.1 and 25.1. No regex (DESIGN.md 5.1).
from micropython import const

from sipling.sip.error import SipError

_DQ = const(34)
_BS = const(92)
_LT = const(60)
_COMMA = const(44)


def _table(chars):
    t = bytearray(256)
    for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
        t[c] = 1
    for c in chars:
        t[c] = 1
    return bytes(t)


# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")  (25.1)
_TOKEN = _table(b"-.!%*_+`'~")
# unreserved = alphanum / mark ; mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")"
USER_OK = _table(b"-_.!~*'()&=+$,;?/")      # user-unreserved (19.1.1, 25.1)
PASS_OK = _table(b"-_.!~*'()&=+$,")
PARAM_OK = _table(b"-_.!~*'()[]/:&+$")      # param-unreserved
HDR_OK = _table(b"-_.!~*'()[]/?:+$")        # hnv-unreserved
_HOST_OK = _table(b"-._")                     # hostname (lenient about "_"); IPv4
_HEX = b"0123456789abcdefABCDEF"


def all_in(b, table):
    for c in b:
        if not table[c]:
            return False
    return True


def is_token(b):
    return len(b) > 0 and all_in(b, _TOKEN)


def unfold(v):
    # RFC 3261 7.3.1: a continuation line (CRLF then SP/HT) is LWS; drop the CRLF.
    if b"\n" in v:
        return v.replace(b"\r\n", b"")
    return v


def unescape(b):
    # escaped = "%" HEXDIG HEXDIG (25.1); one pass, never recursive (RFC 4475 3.1.1.3).
    i = b.find(b"%")
    if i < 0:
        return b
    out = []
    start = 0
    n = len(b)
    while i >= 0:
        if i + 2 >= n or b[i + 1] not in _HEX or b[i + 2] not in _HEX:
            raise SipError(400, "Bad URI: invalid %-escape")
        out.append(b[start:i])
        out.append(bytes([int(b[i + 1:i + 3], 16)]))
        start = i + 3
        i = b.find(b"%", start)
    out.append(b[start:])
    return b"".join(out)


def escape(b, table):
    if all_in(b, table):
        return b
    out = []
    for c in b:
        if table[c]:
            out.append(bytes([c]))
        else:
            out.append(b"%%%02X" % c)
    return b"".join(out)


def quoted_end(v, i):
    # quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE ; v[i] is the opening quote.
    # Returns the index just past the closing quote.
    j = i + 1
    while True:
        q = v.find(b'"', j)
        if q < 0:
            raise SipError(400, "Bad header: unterminated quoted string")
        b = v.find(b"\\", j, q)
        if b < 0:
            return q + 1
        j = b + 2


def unquote(q):
    # q is a whole quoted-string; returns its content with quoted-pairs resolved.
    inner = q[1:-1]
    if b"\\" not in inner:
        return inner
    out = []
    i = 0
    n = len(inner)
    while i < n:
        c = inner[i]
        if c == _BS and i + 1 < n:
            i += 1
            c = inner[i]
        out.append(bytes([c]))
        i += 1
    return b"".join(out)


def split_top(v, sep):
    # Split on byte `sep` outside quoted strings (and outside <...> when sep is a comma),
    # as comma lists (7.3.1) and generic-param lists need. Unbalanced quotes are an error.
    if _DQ not in v and (sep != _COMMA or _LT not in v):
        return v.split(bytes([sep]))
    sb = bytes([sep])
    comma = sep == _COMMA
    out = []
    start = i = 0
    while True:
        s = v.find(sb, i)
        if s < 0:
            break
        q = v.find(b'"', i, s)
        a = v.find(b"<", i, s) if comma else -1
        if q < 0 and a < 0:
            out.append(v[start:s])
            start = i = s + 1
        elif a < 0 or 0 <= q < a:
            i = quoted_end(v, q)
        else:
            g = v.find(b">", a)
            if g < 0:
                break
            i = g + 1
    q = v.find(b'"', i)
    while q >= 0:
        q = v.find(b'"', quoted_end(v, q))
    out.append(v[start:])
    return out


def parse_params(b):
    # *( SEMI generic-param ) ; generic-param = token [ EQUAL gen-value ]  (25.1)
    # gen-value = token / host / quoted-string. Returns [(name, value|None)], value as
    # received (quotes kept). Empty parameters (";;") are an error (RFC 4475 3.1.2.1).
    if not b:
        return []
    b = b.strip(b" \t")
    if not b:
        return []
    if b[0] != 59:
        raise SipError(400, "Bad header: junk after address")
    out = []
    for seg in split_top(b[1:], 59):
        eq = seg.find(b"=")
        name = seg if eq < 0 else seg[:eq]
        if name and (name[0] == 32 or name[0] == 9 or name[-1] == 32 or name[-1] == 9):
            name = name.strip(b" \t")
        if not is_token(name):
            raise SipError(400, "Bad header: empty or invalid parameter")
        if eq >= 0:
            val = seg[eq + 1:].strip(b" \t")
            if not val:
                raise SipError(400, "Bad header: parameter without value")
            if val[0] == _DQ:
                if quoted_end(val, 0) != len(val):
                    raise SipError(400, "Bad header: junk after quoted parameter")
            elif b" " in val or b"\t" in val:
                raise SipError(400, "Bad header: space in parameter value")
            out.append((name, val))
        else:
            out.append((name, None))
    return out


def param(params, name):
    # Case-insensitive lookup in a params list; None when absent, b"" when value-less.
    for n, v in params:
        if n == name or n.lower() == name:
            return b"" if v is None else v
    return None


def hostport(b, i, j):
    # hostport = host [ ":" port ] ; host = hostname / IPv4address / IPv6reference (25.1)
    # Parses b[i:j] (offsets spare the board a copy per step).
    if i < j and b[i] == 91:
        end = b.find(b"]", i, j)
        if end < i + 2:
            raise SipError(400, "Bad URI: bad IPv6 reference")
        host = b[i:end + 1]
        for c in host[1:-1]:
            if c not in b"0123456789abcdefABCDEF:.":
                raise SipError(400, "Bad URI: bad IPv6 reference")
        c = end + 1
        if c < j and b[c] != 58:
            raise SipError(400, "Bad URI: junk after host")
        if c >= j:
            c = -1
    else:
        c = b.find(b":", i, j)
        host = b[i:c if c >= 0 else j]
        if not host or not all_in(host, _HOST_OK):
            raise SipError(400, "Bad URI: invalid host")
    if c < 0:
        return host, None
    port = b[c + 1:j]
    if not port or len(port) > 5 or not port.isdigit() or int(port) > 65535:
        raise SipError(400, "Bad URI: invalid port")
    return host, int(port)
