# SIP/SIPS URIs, name-addr / addr-spec, Via values and generic-param lists.
# RFC 3261 section 19.1 (URI), 20.10 (name-addr), 20.42 (Via), 25.1 (ABNF); RFC 3581 (rport).
# No regex (DESIGN.md 5.1): find/partition/split on bytes and small lookup tables.
from micropython import const

from sipling.sip.error import SipError

_DQ = const(34)
_BS = const(92)
_LT = const(60)
_GT = const(62)
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
_USER_OK = _table(b"-_.!~*'()&=+$,;?/")      # user-unreserved (19.1.1, 25.1)
_PASS_OK = _table(b"-_.!~*'()&=+$,")
_PARAM_OK = _table(b"-_.!~*'()[]/:&+$")      # param-unreserved
_HDR_OK = _table(b"-_.!~*'()[]/?:+$")        # hnv-unreserved
_HOST_OK = _table(b"-._")                     # hostname (lenient about "_"); IPv4
_HEX = b"0123456789abcdefABCDEF"
_BAD_IN_URI = (b" ", b"\t", b"\r", b"\n", b"<", b">", b'"', b"\x00")


def _all_in(b, table):
    for c in b:
        if not table[c]:
            return False
    return True


def is_token(b):
    return len(b) > 0 and _all_in(b, _TOKEN)


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
    if _all_in(b, table):
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


def _hostport(b, i, j):
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
        if not host or not _all_in(host, _HOST_OK):
            raise SipError(400, "Bad URI: invalid host")
    if c < 0:
        return host, None
    port = b[c + 1:j]
    if not port or len(port) > 5 or not port.isdigit() or int(port) > 65535:
        raise SipError(400, "Bad URI: invalid port")
    return host, int(port)


class Uri:
    # SIP/SIPS: user/password/params/headers hold unescaped values (RFC 3261 19.1.4).
    # Other schemes (absoluteURI): only scheme and opaque (the rest, as received).
    def __init__(self, scheme, user=None, password=None, host=None, port=None,
                 params=None, headers=None, opaque=None):
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else []
        self.headers = headers if headers is not None else []
        self.opaque = opaque

    def param(self, name):
        if isinstance(name, str):
            name = name.encode()
        return param(self.params, name.lower())

    def serialize(self):
        if self.opaque is not None:
            return self.scheme + b":" + self.opaque
        out = [self.scheme, b":"]
        if self.user is not None:
            out.append(escape(self.user, _USER_OK))
            if self.password is not None:
                out.append(b":")
                out.append(escape(self.password, _PASS_OK))
            out.append(b"@")
        out.append(self.host)
        if self.port is not None:
            out.append(b":%d" % self.port)
        for n, v in self.params:
            out.append(b";")
            out.append(escape(n, _PARAM_OK))
            if v is not None:
                out.append(b"=")
                out.append(escape(v, _PARAM_OK))
        sep = b"?"
        for n, v in self.headers:
            out.append(sep)
            out.append(escape(n, _HDR_OK))
            out.append(b"=")
            out.append(escape(v, _HDR_OK))
            sep = b"&"
        return b"".join(out)

    def _key(self):
        return (self.scheme, self.user, self.password, self.host, self.port,
                list(self.params), list(self.headers), self.opaque)

    def __eq__(self, other):
        return isinstance(other, Uri) and self._key() == other._key()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Uri(%r)" % self.serialize()


def _pairs(b, i, j, sep, need_eq):
    # uri-parameters (";" name ["=" value]) or headers ("&" hname "=" hvalue) of b[i:j],
    # unescaped (19.1.1).
    out = []
    while i <= j:
        k = b.find(sep, i, j)
        if k < 0:
            k = j
        eq = b.find(b"=", i, k)
        if eq == i or k == i or (need_eq and eq < 0):
            raise SipError(400, "Bad URI: empty parameter" if sep == b";" else
                           "Bad URI: bad header part")
        if eq < 0:
            out.append((unescape(b[i:k]), None))
        else:
            out.append((unescape(b[i:eq]), unescape(b[eq + 1:k])))
        i = k + 1
    return out


def parse_uri(b):
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]  (19.1.1, 25.1)
    # absoluteURI = scheme ":" ( hier-part / opaque-part )  (RFC 2396, kept opaque)
    if not b:
        raise SipError(400, "Bad URI: empty")
    for ch in _BAD_IN_URI:
        if ch in b:
            raise SipError(400, "Bad URI: space, quote or <> inside URI")
    if b.startswith(b"sip:"):
        scheme = b"sip"
        i = 4
    elif b.startswith(b"sips:"):
        scheme = b"sips"
        i = 5
    else:
        colon = b.find(b":")
        c = b[0] | 32
        if colon <= 0 or c < 97 or c > 122:
            raise SipError(400, "Bad URI: no scheme")
        scheme = b[:colon].lower()
        for c in scheme:
            if c not in b"abcdefghijklmnopqrstuvwxyz0123456789+-.":
                raise SipError(400, "Bad URI: invalid scheme")
        if colon + 1 >= len(b):
            raise SipError(400, "Bad URI: empty after scheme")
        if scheme != b"sip" and scheme != b"sips":
            return Uri(scheme, opaque=b[colon + 1:])
        i = colon + 1
    n = len(b)
    user = password = None
    at = b.rfind(b"@", i)
    if at >= 0:
        c = b.find(b":", i, at)
        if c == i or at == i:
            raise SipError(400, "Bad URI: empty user")
        if c < 0:
            user = unescape(b[i:at])
        else:
            user = unescape(b[i:c])
            password = unescape(b[c + 1:at])
        i = at + 1
    q = b.find(b"?", i)
    end = q if q >= 0 else n
    semi = b.find(b";", i, end)
    host, port = _hostport(b, i, semi if semi >= 0 else end)
    params = _pairs(b, semi + 1, end, b";", False) if semi >= 0 else []
    headers = _pairs(b, q + 1, n, b"&", True) if q >= 0 else []
    return Uri(scheme, user, password, host, port, params, headers)


def parse_name_addr(b):
    # (name-addr / addr-spec) *(SEMI param)  (20.10, 20.20, 20.39, 25.1)
    # name-addr = [ display-name ] LAQUOT addr-spec RAQUOT
    # display-name = *(token LWS) / quoted-string
    # Parameters after an addr-spec without <> are header parameters (RFC 4475 3.3.12).
    # Returns (display bytes|None, Uri, params); a quoted display name is unquoted.
    s = unfold(b).strip(b" \t")
    if not s:
        raise SipError(400, "Bad address: empty")
    if s[0] == _DQ:
        end = quoted_end(s, 0)
        display = unquote(s[:end])
        lt = s.find(b"<", end)
        if lt < 0 or s[end:lt].strip(b" \t"):
            raise SipError(400, "Bad address: no <URI> after quoted display name")
    else:
        lt = s.find(b"<")
        semi = s.find(b";")
        if lt >= 0 and (semi < 0 or lt < semi):
            display = s[:lt].strip(b" \t") if lt else None
            if display:
                if _DQ in display:
                    raise SipError(400, "Bad address: stray quote in display name")
                for word in display.split():
                    if not is_token(word):
                        raise SipError(400, "Bad address: display name must be quoted")
        else:
            lt = -1
    if lt >= 0:
        gt = s.find(b">", lt)
        if gt < 0:
            raise SipError(400, "Bad address: missing >")
        ub = s[lt + 1:gt]
        if ub and (ub[0] == 32 or ub[0] == 9 or ub[-1] == 32 or ub[-1] == 9):
            raise SipError(400, "Bad address: space inside <>")
        return (display or None), parse_uri(ub), parse_params(s[gt + 1:])
    semi = s.find(b";")
    ub = s if semi < 0 else s[:semi].rstrip(b" \t")
    if b"?" in ub:
        raise SipError(400, "Bad address: URI with headers needs <>")
    return None, parse_uri(ub), parse_params(s[semi:] if semi >= 0 else b"")


class Via:
    # via-parm = sent-protocol LWS sent-by *( SEMI via-params )  (20.42, 25.1)
    def __init__(self, transport, host, port=None, params=None, protocol=b"SIP/2.0"):
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params if params is not None else []

    def param(self, name):
        if isinstance(name, str):
            name = name.encode()
        return param(self.params, name.lower())

    @property
    def branch(self):
        return self.param(b"branch")

    @property
    def received(self):
        return self.param(b"received")

    @property
    def has_rport(self):
        return self.param(b"rport") is not None

    @property
    def rport(self):
        # RFC 3581: int when the rport parameter has a value, else None.
        v = self.param(b"rport")
        if v and v.isdigit() and len(v) <= 5:
            return int(v)
        return None

    def serialize(self):
        out = [self.protocol, b"/", self.transport, b" ", self.host]
        if self.port is not None:
            out.append(b":%d" % self.port)
        for n, v in self.params:
            out.append(b";")
            out.append(n)
            if v is not None:
                out.append(b"=")
                out.append(v)
        return b"".join(out)

    def __eq__(self, other):
        return (isinstance(other, Via) and self.protocol == other.protocol and
                self.transport == other.transport and self.host == other.host and
                self.port == other.port and list(self.params) == list(other.params))

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        return "Via(%r)" % self.serialize()


def parse_via(b):
    # sent-protocol = protocol-name SLASH protocol-version SLASH transport
    # SLASH = SWS "/" SWS ; sent-by = host [ COLON port ]  (LWS allowed around both)
    b = unfold(b)
    semi = b.find(b";")
    head = b if semi < 0 else b[:semi]
    if head.startswith(b"SIP/2.0/"):
        rest = head[8:]
    else:
        sp = head.split(b"/", 2)
        if len(sp) != 3:
            raise SipError(400, "Bad Via: no sent-protocol")
        if sp[0].strip(b" \t").upper() != b"SIP":
            raise SipError(400, "Bad Via: protocol is not SIP")
        if sp[1].strip(b" \t") != b"2.0":
            raise SipError(505, "Version Not Supported (Via)")
        rest = sp[2]
    rest = rest.split(None, 1)
    if len(rest) != 2 or not is_token(rest[0]):
        raise SipError(400, "Bad Via: no transport or sent-by")
    sent_by = rest[1]
    if b" " in sent_by or b"\t" in sent_by:
        sent_by = b"".join(sent_by.split())
    host, port = _hostport(sent_by, 0, len(sent_by))
    t = rest[0]
    u = t.upper()
    return Via(t if u == t else u, host, port, parse_params(b[semi:]) if semi >= 0 else [])


def parse_via_list(b):
    # Via = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm); empty elements are errors.
    if b"," not in b:
        return [parse_via(b)]
    return [parse_via(p) for p in split_top(unfold(b), _COMMA)]
