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
    n = len(v)
    j = i + 1
    while j < n:
        c = v[j]
        if c == _BS:
            j += 2
            continue
        if c == _DQ:
            return j + 1
        j += 1
    raise SipError(400, "Bad header: unterminated quoted string")


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
    # as comma lists (7.3.1) and generic-param lists need.
    if _DQ not in v and (sep != _COMMA or _LT not in v):
        return v.split(bytes([sep]))
    out = []
    start = 0
    i = 0
    n = len(v)
    depth = 0
    while i < n:
        c = v[i]
        if c == _DQ:
            i = quoted_end(v, i)
            continue
        if sep == _COMMA and c == _LT:
            depth += 1
        elif c == _GT and depth:
            depth -= 1
        elif c == sep and not depth:
            out.append(v[start:i])
            start = i + 1
        i += 1
    out.append(v[start:])
    return out


def parse_params(b):
    # *( SEMI generic-param ) ; generic-param = token [ EQUAL gen-value ]  (25.1)
    # gen-value = token / host / quoted-string. Returns [(name, value|None)], value as
    # received (quotes kept). Empty parameters (";;") are an error (RFC 4475 3.1.2.1).
    b = b.strip(b" \t")
    if not b:
        return []
    if b[0] != 59:
        raise SipError(400, "Bad header: junk after address")
    out = []
    for seg in split_top(b[1:], 59):
        name, eq, val = seg.partition(b"=")
        name = name.strip(b" \t")
        if not is_token(name):
            raise SipError(400, "Bad header: empty or invalid parameter")
        if eq:
            val = val.strip(b" \t")
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


def _hostport(hp):
    # hostport = host [ ":" port ] ; host = hostname / IPv4address / IPv6reference (25.1)
    if hp[:1] == b"[":
        end = hp.find(b"]")
        if end < 2:
            raise SipError(400, "Bad URI: bad IPv6 reference")
        host = hp[:end + 1]
        for c in host[1:-1]:
            if c not in b"0123456789abcdefABCDEF:.":
                raise SipError(400, "Bad URI: bad IPv6 reference")
        rest = hp[end + 1:]
        if rest and rest[0] != 58:
            raise SipError(400, "Bad URI: junk after host")
        port = rest[1:] if rest else None
        sep = rest
    else:
        host, sep, port = hp.partition(b":")
        if not host or not _all_in(host, _HOST_OK):
            raise SipError(400, "Bad URI: invalid host")
    if sep:
        if not port or len(port) > 5 or not port.isdigit() or int(port) > 65535:
            raise SipError(400, "Bad URI: invalid port")
        return host, int(port)
    return host, None


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


def parse_uri(b):
    # SIP-URI = "sip:" [ userinfo ] hostport uri-parameters [ headers ]  (19.1.1, 25.1)
    # absoluteURI = scheme ":" ( hier-part / opaque-part )  (RFC 2396, kept opaque)
    if not b:
        raise SipError(400, "Bad URI: empty")
    for ch in _BAD_IN_URI:
        if ch in b:
            raise SipError(400, "Bad URI: space, quote or <> inside URI")
    colon = b.find(b":")
    if colon <= 0 or not b[:1].isalpha():
        raise SipError(400, "Bad URI: no scheme")
    scheme = b[:colon].lower()
    for c in scheme:
        if c not in b"abcdefghijklmnopqrstuvwxyz0123456789+-.":
            raise SipError(400, "Bad URI: invalid scheme")
    rest = b[colon + 1:]
    if scheme != b"sip" and scheme != b"sips":
        if not rest:
            raise SipError(400, "Bad URI: empty after scheme")
        return Uri(scheme, opaque=rest)
    user = password = None
    at = rest.rfind(b"@")
    if at >= 0:
        user, sep, password = rest[:at].partition(b":")
        if not user:
            raise SipError(400, "Bad URI: empty user")
        user = unescape(user)
        password = unescape(password) if sep else None
        rest = rest[at + 1:]
    rest, sep, hdrs = rest.partition(b"?")
    parts = rest.split(b";")
    host, port = _hostport(parts[0])
    params = []
    for p in parts[1:]:
        name, eq, val = p.partition(b"=")
        if not name:
            raise SipError(400, "Bad URI: empty parameter")
        params.append((unescape(name), unescape(val) if eq else None))
    headers = []
    if sep:
        for h in hdrs.split(b"&"):
            name, eq, val = h.partition(b"=")
            if not name or not eq:
                raise SipError(400, "Bad URI: bad header part")
            headers.append((unescape(name), unescape(val)))
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
            display = s[:lt].strip(b" \t")
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
        if ub != ub.strip(b" \t"):
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
    segs = split_top(unfold(b), 59)
    sp = segs[0].split(b"/", 2)
    if len(sp) != 3:
        raise SipError(400, "Bad Via: no sent-protocol")
    name = sp[0].strip(b" \t").upper()
    ver = sp[1].strip(b" \t")
    if name != b"SIP":
        raise SipError(400, "Bad Via: protocol is not SIP")
    if ver != b"2.0":
        raise SipError(505, "Version Not Supported (Via)")
    rest = sp[2].strip(b" \t").split(None, 1)
    if len(rest) != 2 or not is_token(rest[0]):
        raise SipError(400, "Bad Via: no transport or sent-by")
    sent_by = b"".join(rest[1].split())
    host, port = _hostport(sent_by)
    params = []
    if len(segs) > 1:
        params = parse_params(b";" + b";".join(segs[1:]))
    return Via(rest[0].upper(), host, port, params)


def parse_via_list(b):
    # Via = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm); empty elements are errors.
    return [parse_via(p) for p in split_top(unfold(b), _COMMA)]
