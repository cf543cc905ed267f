# SIP/SIPS URIs and name-addr / addr-spec (RFC 3261 19.1, 20.10, 25.1).
# No regex (DESIGN.md 5.1): find/partition/split on bytes and small lookup tables.
# The lexical helpers live in lex.py and Via in via.py; both are re-exported here.
from micropython import const

from sipling.sip.error import SipError
from sipling.sip.lex import (  # noqa: F401  (re-exported)
    is_token, unfold, unescape, escape, quoted_end, unquote, split_top, parse_params, param,
    hostport, all_in, USER_OK, PASS_OK, PARAM_OK, HDR_OK)
from sipling.sip.via import Via, parse_via, parse_via_list  # noqa: F401  (re-exported)

_DQ = const(34)
_BAD_IN_URI = (b" ", b"\t", b"\r", b"\n", b"<", b">", b'"', b"\x00")


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
            out.append(escape(self.user, USER_OK))
            if self.password is not None:
                out.append(b":")
                out.append(escape(self.password, PASS_OK))
            out.append(b"@")
        out.append(self.host)
        if self.port is not None:
            out.append(b":%d" % self.port)
        for n, v in self.params:
            out.append(b";")
            out.append(escape(n, PARAM_OK))
            if v is not None:
                out.append(b"=")
                out.append(escape(v, PARAM_OK))
        sep = b"?"
        for n, v in self.headers:
            out.append(sep)
            out.append(escape(n, HDR_OK))
            out.append(b"=")
            out.append(escape(v, HDR_OK))
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
    host, port = hostport(b, i, semi if semi >= 0 else end)
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
