# SIP message model and serializer (RFC 3261 section 7, 8.2.6.2, 20).
#
# headers is a list of [name, value] pairs in wire order. A parsed value is the field
# value as received, without the LWS around it (a folded value keeps its CRLF + WSP
# inside). serialize() re-emits every header line it did not see changed byte for byte,
# and makes Content-Length match the body. get()/get_all() answer by case-insensitive
# name, compact forms equal to long ones (7.3.3), with folding reduced to LWS (7.3.1).
from micropython import const

from sipling.sip.error import SipError  # noqa: F401  (re-exported: sipling.sip.message.SipError)
from sipling.sip.uri import (parse_name_addr, parse_via, parse_via_list, parse_uri, split_top,
                             unfold, param)

_COMMA = const(44)

# RFC 3261 7.3.3 and the IANA header registry's compact forms.
_COMPACT = {
    b"i": b"call-id", b"m": b"contact", b"f": b"from", b"t": b"to", b"v": b"via",
    b"l": b"content-length", b"c": b"content-type", b"s": b"subject", b"k": b"supported",
    b"e": b"content-encoding", b"o": b"event", b"u": b"allow-events", b"r": b"refer-to",
    b"b": b"referred-by", b"x": b"session-expires", b"y": b"identity",
    b"a": b"accept-contact", b"j": b"reject-contact", b"d": b"request-disposition",
    b"n": b"identity-info",
}

# Fields whose grammar is not a comma list (or carries commas inside one value), so
# get_all() does not split them (RFC 3261 7.3.1, 20).
_NOLIST = {
    b"www-authenticate", b"authorization", b"proxy-authenticate", b"proxy-authorization",
    b"authentication-info", b"date", b"subject", b"user-agent", b"server", b"organization",
    b"call-id", b"cseq", b"content-length", b"content-type", b"max-forwards", b"expires",
    b"min-expires", b"timestamp", b"retry-after", b"priority", b"mime-version", b"from",
    b"to", b"identity", b"content-disposition", b"reply-to", b"rseq", b"rack",
}

_canon_b = {}
_canon_s = {}


def canon(name):
    # Canonical key of a header name: lower case, compact form expanded.
    # (Two caches: MicroPython warns when a dict compares str with bytes keys.)
    cache = _canon_s if isinstance(name, str) else _canon_b
    k = cache.get(name)
    if k is None:
        n = name.encode() if isinstance(name, str) else name
        k = n.lower()
        k = _COMPACT.get(k, k)
        if len(cache) < 96:
            cache[name] = k
    return k


def _b(x):
    return x.encode() if isinstance(x, str) else bytes(x)


def _check_value(v):
    # Local misuse guard: a value may hold CRLF only as folding (CRLF then SP/HT).
    if b"\r" in v or b"\n" in v:
        w = v.replace(b"\r\n ", b"").replace(b"\r\n\t", b"")
        if b"\r" in w or b"\n" in w:
            raise ValueError("header value with bare CR/LF")


class Message:
    def __init__(self, method=None, uri=None, status=None, reason=None, headers=None, body=b""):
        self.method = method
        self.uri = uri
        self.status = status
        self.reason = reason
        self.headers = headers if headers is not None else []
        self.body = body
        self._src = None   # (data, start, end) of the header section as received
        self._c = None     # cache: key -> (value object parsed, result)

    @property
    def is_request(self):
        return self.method is not None

    # -- access ----------------------------------------------------------------
    def get(self, name):
        k = canon(name)
        for h in self.headers:
            if canon(h[0]) == k:
                return unfold(h[1])
        return None

    def header_lines(self, name):
        k = canon(name)
        return [h[1] for h in self.headers if canon(h[0]) == k]

    def get_all(self, name):
        k = canon(name)
        out = []
        for h in self.headers:
            if canon(h[0]) != k:
                continue
            v = unfold(h[1])
            if k in _NOLIST:
                out.append(v)
                continue
            for p in split_top(v, _COMMA):
                p = p.strip(b" \t")
                if p:
                    out.append(p)
        return out

    # -- changes -----------------------------------------------------------------
    def add(self, name, value, first=False):
        name = _b(name)
        value = _b(value)
        _check_value(value)
        if first:
            self.headers.insert(0, [name, value])
        else:
            self.headers.append([name, value])

    def set(self, name, value):
        # Replace every field of that name with one, at the place of the first.
        k = canon(name)
        value = _b(value)
        _check_value(value)
        hs = self.headers
        for i in range(len(hs)):
            if canon(hs[i][0]) == k:
                hs[i] = [hs[i][0], value]
                j = i + 1
                while j < len(hs):
                    if canon(hs[j][0]) == k:
                        del hs[j]
                    else:
                        j += 1
                return
        hs.append([_b(name), value])

    def remove(self, name):
        k = canon(name)
        n = len(self.headers)
        self.headers = [h for h in self.headers if canon(h[0]) != k]
        return n - len(self.headers)

    # -- parsed views (cached per value object) ------------------------------------
    def _cached(self, key, value, fn):
        c = self._c
        if c is None:
            c = self._c = {}
        e = c.get(key)
        if e is not None and e[0] is value:
            return e[1]
        r = fn(value)
        c[key] = (value, r)
        return r

    def _first_raw(self, k):
        for h in self.headers:
            if canon(h[0]) == k:
                return h[1]
        return None

    def top_via(self):
        v = self._first_raw(b"via")
        if v is None:
            return None
        return self._cached(b"via", v, _top_via)

    def vias(self):
        # Every Via value, top first, over all Via header lines (20.42, 7.3.1).
        out = []
        for h in self.headers:
            if canon(h[0]) == b"via":
                out.extend(parse_via_list(h[1]))
        return out

    def request_uri(self):
        # The Request-URI parsed (a Uri); None for a response.
        if self.uri is None:
            return None
        return self._cached(b"ruri", self.uri, parse_uri)

    def max_forwards(self):
        v = self.get(b"max-forwards")
        if v is None:
            return None
        v = v.strip(b" \t")
        if not v.isdigit() or len(v) > 9:
            raise SipError(400, "Bad Max-Forwards")
        return int(v)

    def via_branch(self):
        v = self.top_via()
        return v.branch if v is not None else None

    def cseq(self):
        v = self._first_raw(b"cseq")
        if v is None:
            raise SipError(400, "Missing CSeq header")
        return self._cached(b"cseq", v, parse_cseq)

    def call_id(self):
        v = self.get(b"call-id")
        return v.strip(b" \t") if v is not None else None

    def from_addr(self):
        v = self._first_raw(b"from")
        return None if v is None else self._cached(b"from", v, parse_name_addr)

    def to_addr(self):
        v = self._first_raw(b"to")
        return None if v is None else self._cached(b"to", v, parse_name_addr)

    def from_tag(self):
        a = self.from_addr()
        return param(a[2], b"tag") if a is not None else None

    def to_tag(self):
        a = self.to_addr()
        return param(a[2], b"tag") if a is not None else None

    # -- wire ----------------------------------------------------------------------
    def serialize(self):
        # Unmodified header lines of a parsed message are copied from the received bytes
        # (runs of adjacent lines as one slice); others are written "Name: value".
        out = []
        if self.method is not None:
            out.append(self.method)
            out.append(b" ")
            out.append(self.uri)
            out.append(b" SIP/2.0\r\n")
        else:
            out.append(b"SIP/2.0 %d " % self.status)
            out.append(self.reason or b"")
            out.append(b"\r\n")
        src = self._src
        if src is not None:
            data = src[0]
            spans = _line_spans(data, src[1], src[2])
        nspans = len(spans) if src is not None else 0
        ptr = 0
        run_s = run_e = -1
        blen = len(self.body)
        cl_done = False
        for h in self.headers:
            name = h[0]
            value = h[1]
            if canon(name) == b"content-length":
                if cl_done:
                    continue
                cl_done = True
                if not (value.isdigit() and len(value) < 10 and int(value) == blen):
                    value = b"%d" % blen
            j = ptr
            while j < nspans and j < ptr + 8:
                if _raw_matches(data, spans[j], spans[j + 1], name, value):
                    break
                j += 2
            else:
                j = -1
            if j >= 0:
                if run_e >= 0 and spans[j] == run_e + 2:
                    run_e = spans[j + 1]
                else:
                    if run_e >= 0:
                        out.append(data[run_s:run_e])
                        out.append(b"\r\n")
                    run_s = spans[j]
                    run_e = spans[j + 1]
                ptr = j + 2
                continue
            if run_e >= 0:
                out.append(data[run_s:run_e])
                out.append(b"\r\n")
                run_e = -1
            out.append(name)
            out.append(b": ")
            out.append(value)
            out.append(b"\r\n")
        if run_e >= 0:
            out.append(data[run_s:run_e])
            out.append(b"\r\n")
        if not cl_done:
            out.append(b"Content-Length: %d\r\n" % blen)
        out.append(b"\r\n")
        out.append(self.body)
        return b"".join(out)

    # -- comparison: Content-Length is framing, so equality compares the body instead.
    def _key(self):
        hs = [(h[0], h[1]) for h in self.headers if canon(h[0]) != b"content-length"]
        return (self.method, self.uri, self.status, self.reason, hs, self.body)

    def __eq__(self, other):
        return isinstance(other, Message) and self._key() == other._key()

    def __ne__(self, other):
        return not self.__eq__(other)

    def __repr__(self):
        if self.method is not None:
            return "<Message %s %s>" % (self.method.decode(), self.uri.decode())
        return "<Message %d>" % self.status


def _line_spans(data, pos, end):
    # [start, end, start, end, ...] of each header field in data[pos:end], a folded field
    # (continuation lines, 7.3.1) counting as one.
    spans = []
    while pos < end:
        e = data.find(b"\r\n", pos, end)
        if e < 0:
            e = end
        while e + 2 < end and (data[e + 2] == 32 or data[e + 2] == 9):
            e = data.find(b"\r\n", e + 2, end)
            if e < 0:
                e = end
        spans.append(pos)
        spans.append(e)
        pos = e + 2
    return spans


def _raw_matches(data, pos, e, name, value):
    # Does the received line data[pos:e] say exactly (name, value)? No copies made.
    n = pos + len(name)
    if n > e or not data.startswith(name, pos):
        return False
    while n < e and (data[n] == 32 or data[n] == 9):
        n += 1
    if n >= e or data[n] != 58:
        return False
    v = n + 1
    while v < e and (data[v] == 32 or data[v] == 9 or data[v] == 13 or data[v] == 10):
        v += 1
    ve = e
    while ve > v and (data[ve - 1] == 32 or data[ve - 1] == 9):
        ve -= 1
    return ve - v == len(value) and data.startswith(value, v)


def _top_via(v):
    return parse_via(split_top(unfold(v), _COMMA)[0])


def parse_cseq(v):
    # CSeq = "CSeq" HCOLON 1*DIGIT LWS Method  (20.16; the number is below 2**32 here,
    # RFC 4475 3.1.2.4 asks to refuse larger ones)
    p = unfold(v).split()
    if len(p) != 2 or not p[0].isdigit():
        raise SipError(400, "Bad CSeq")
    if len(p[0]) > 12 or int(p[0]) > 0xFFFFFFFF:
        raise SipError(400, "Bad CSeq: number out of range")
    return int(p[0]), p[1]


def request(method, uri, headers, body=b""):
    m = Message(method=_b(method), uri=_b(uri), body=_b(body))
    for name, value in headers:
        m.add(name, value)
    return m


_COPY = (b"via", b"from", b"to", b"call-id", b"cseq")


def response(req, status, reason, headers=(), body=b"", to_tag=None):
    # RFC 3261 8.2.6.2: Via (all, in order), From, To, Call-ID and CSeq copied as
    # received; a To tag is added when the request had none and one is given.
    m = Message(status=status, reason=_b(reason), body=_b(body))
    hs = m.headers
    for h in req.headers:
        k = canon(h[0])
        if k in _COPY:
            v = h[1]
            if k == b"to" and to_tag is not None and req.to_tag() is None:
                v = v + b";tag=" + _b(to_tag)
            hs.append([h[0], v])
    for name, value in headers:
        m.add(name, value)
    return m
