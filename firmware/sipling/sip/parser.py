# SIP message parser for one datagram or one framed stream message (RFC 3261 7, 18.3, 20).
#
# parse() splits the start line and the header lines, checks the fields every layer
# relies on (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact) and
# leaves every other header as opaque bytes. parse_or_reply() turns a refused request
# into the bytes of a stateless error reply whose reason phrase says what was wrong.
from micropython import const

from sipling.sip.error import SipError
from sipling.sip.message import Message, canon, parse_cseq
from sipling.sip.uri import (parse_uri, parse_name_addr, parse_via_list, split_top, unfold,
                             is_token, param)

# Limits. A request over them is answered 513 / 413 / 400 with the limit in the phrase.
MAX_MESSAGE = const(16384)   # bytes in one message -> 513 Message Too Large (21.5.14)
MAX_BODY = const(12288)      # Content-Length -> 413 Request Entity Too Large (21.4.11)
MAX_HEADERS = const(64)      # header fields (after unfolding) -> 400
MAX_LINE = const(1024)       # bytes in one physical line -> 400

# Usual header names, reused instead of a fresh slice per parse (keyed by length and first
# byte, compared in place).
_USUAL = {}
for _n in (b"Via", b"From", b"To", b"Call-ID", b"CSeq", b"Contact", b"Max-Forwards", b"Expires",
           b"Content-Length", b"Content-Type", b"Authorization", b"WWW-Authenticate",
           b"Proxy-Authenticate", b"Proxy-Authorization", b"Security-Server", b"Security-Client",
           b"Security-Verify", b"Require", b"Proxy-Require", b"Supported", b"Allow", b"Route",
           b"Record-Route", b"User-Agent", b"Server", b"Event", b"Min-Expires", b"Date",
           b"Authentication-Info", b"Accept", b"Path", b"Service-Route", b"P-Associated-URI",
           b"v", b"f", b"t", b"i", b"m", b"l", b"c", b"k"):
    _USUAL.setdefault(len(_n) * 256 + _n[0], []).append(_n)
del _n

_SINGLE = (b"from", b"to", b"call-id", b"cseq", b"max-forwards")
_NAMES = {b"via": "Via", b"from": "From", b"to": "To", b"call-id": "Call-ID", b"cseq": "CSeq",
          b"max-forwards": "Max-Forwards"}
_REQUIRED = (b"via", b"from", b"to", b"call-id", b"cseq")


def split_headers(sec, raws=None, pos=0, end=-1):
    # message-header = field-name HCOLON field-value CRLF, continuation lines start with
    # SP/HT (7.3.1). sec[pos:end] is the header section without its final CRLF CRLF.
    # Returns [name, value] pairs; raws, when given, gets each field's raw bytes (folds kept).
    out = []
    if end < 0:
        end = len(sec)
    if pos >= end:
        return out
    if sec.find(b"\r\n ", pos, end) < 0 and sec.find(b"\r\n\t", pos, end) < 0 \
            and sec[pos] != 32 and sec[pos] != 9:
        # no folding: one field per line, sliced straight out of sec (the common case)
        while pos < end:
            e = sec.find(b"\r\n", pos, end)
            if e < 0:
                e = end
            if e - pos > MAX_LINE:
                raise SipError(400, "Header line longer than %d bytes" % MAX_LINE)
            colon = sec.find(b":", pos, e)
            if colon <= pos:
                raise SipError(400, "Header line without colon")
            n = colon
            while sec[n - 1] == 32 or sec[n - 1] == 9:
                n -= 1
                if n == pos:
                    raise SipError(400, "Bad header name")
            v = colon + 1
            while v < e and (sec[v] == 32 or sec[v] == 9):
                v += 1
            ve = e
            while ve > v and (sec[ve - 1] == 32 or sec[ve - 1] == 9):
                ve -= 1
            name = None
            for u in _USUAL.get((n - pos) * 256 + sec[pos], ()):
                if sec.startswith(u, pos):
                    name = u
                    break
            if name is None:
                name = sec[pos:n]
                if b" " in name or b"\t" in name:
                    raise SipError(400, "Bad header name")
            out.append([name, sec[v:ve]])
            if raws is not None:
                raws.append(sec[pos:e])
            if len(out) > MAX_HEADERS:
                raise SipError(400, "More than %d header fields" % MAX_HEADERS)
            pos = e + 2
        return out
    lines = sec[pos:end].split(b"\r\n")
    n = len(lines)
    i = 0
    while i < n:
        line = lines[i]
        j = i + 1
        while j < n and lines[j] and (lines[j][0] == 32 or lines[j][0] == 9):
            j += 1
        if j > i + 1:
            for k in range(i + 1, j):
                if len(lines[k]) > MAX_LINE:
                    raise SipError(400, "Header line longer than %d bytes" % MAX_LINE)
            line = b"\r\n".join(lines[i:j])
        elif len(line) > MAX_LINE:
            raise SipError(400, "Header line longer than %d bytes" % MAX_LINE)
        i = j
        colon = line.find(b":")
        if colon <= 0:
            if line and (line[0] == 32 or line[0] == 9):
                raise SipError(400, "Continuation line before the first header")
            raise SipError(400, "Header line without colon")
        name = line[:colon].rstrip(b" \t")
        if not name or b" " in name or b"\t" in name:
            raise SipError(400, "Bad header name")
        out.append([name, line[colon + 1:].strip(b" \t\r\n")])
        if raws is not None:
            raws.append(line)
        if len(out) > MAX_HEADERS:
            raise SipError(400, "More than %d header fields" % MAX_HEADERS)
    return out


def _start_line(sl):
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF           (7.1, 25.1)
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF     (7.2)
    if len(sl) > MAX_LINE:
        raise SipError(400, "Start line longer than %d bytes" % MAX_LINE)
    if b"\n" in sl or b"\r" in sl:
        raise SipError(400, "Bare CR or LF in start line")
    if sl[:4].upper() == b"SIP/":
        ver, _, rest = sl.partition(b" ")
        if ver.upper() != b"SIP/2.0":
            raise SipError(505, "Version Not Supported")
        code, _, reason = rest.partition(b" ")
        if len(code) != 3 or not code.isdigit() or code[0] < 49 or code[0] > 54:
            raise SipError(400, "Bad status code")   # Status-Code = 3DIGIT, 100..699 (7.2)
        m = Message(status=int(code), reason=reason)
        return m
    parts = sl.split(b" ")
    if len(parts) != 3 or not parts[1]:
        raise SipError(400, "Bad Request-Line: needs Method SP Request-URI SP SIP-Version")
    method, uri, ver = parts
    if not is_token(method):
        raise SipError(400, "Bad Request-Line: bad method")
    if ver.upper() != b"SIP/2.0":
        if ver[:4].upper() == b"SIP/":
            raise SipError(505, "Version Not Supported")
        raise SipError(400, "Bad Request-Line: bad SIP-Version")
    if uri[0] == 60:
        raise SipError(400, "Bad Request-URI: enclosed in <>")
    u = parse_uri(uri)
    if u.headers:
        # 19.1.1 table: headers are not allowed in a Request-URI (RFC 4475 3.1.2.11)
        raise SipError(400, "Bad Request-URI: contains headers")
    m = Message(method=method, uri=uri)
    m._c = {b"ruri": (uri, u)}
    return m


def _check(m):
    # The fields every layer relies on, checked once here; results go to m's cache.
    seen = {}
    c = m._c
    if c is None:
        c = m._c = {}
    vias = None
    cl = None
    for h in m.headers:
        k = canon(h[0])
        v = h[1]
        if k == b"via":
            lst = parse_via_list(v)
            if vias is None:
                vias = lst
                c[b"via"] = (v, lst[0])
        elif k in _SINGLE:
            if k in seen:
                raise SipError(400, "Duplicate %s header" % _NAMES[k])
            seen[k] = v
        elif k == b"content-length":
            # Content-Length = 1*DIGIT (20.14); conflicting values are a framing error.
            if not v.isdigit() or len(v) > 9:
                raise SipError(400, "Bad Content-Length")
            n = int(v)
            if cl is not None and cl != n:
                raise SipError(400, "Conflicting Content-Length values")
            cl = n
        elif k == b"contact" and m.method is not None:
            # requests only: a response's Contact is parsed when someone asks for it
            u = unfold(v).strip(b" \t")
            if u != b"*":
                for p in split_top(u, 44):
                    parse_name_addr(p)
    if vias is None:
        raise SipError(400, "Missing Via header")
    for k in _REQUIRED[1:]:
        if k not in seen:
            raise SipError(400, "Missing %s header" % _NAMES[k])
    for k in (b"from", b"to"):
        v = seen[k]
        c[k] = (v, parse_name_addr(v))
    cid = unfold(seen[b"call-id"]).strip(b" \t")
    if not cid or b" " in cid or b"\t" in cid:
        raise SipError(400, "Bad Call-ID")
    cs = parse_cseq(seen[b"cseq"])
    c[b"cseq"] = (seen[b"cseq"], cs)
    mf = seen.get(b"max-forwards")
    if mf is not None and (not mf.isdigit() or len(mf) > 9):
        raise SipError(400, "Bad Max-Forwards")
    if m.method is not None:
        if cs[1] != m.method:
            raise SipError(400, "CSeq method does not match the request method")
        if vias[0].branch == b"z9hG4bK":
            # RFC 4475 3.2.1: the magic cookie alone is no transaction id.
            raise SipError(400, "Bad Via: branch is only the magic cookie")
    return cl


def parse(data):
    if not isinstance(data, bytes):
        data = bytes(data)
    n = len(data)
    if n > MAX_MESSAGE:
        raise SipError(513, "Message Too Large (%d bytes, limit %d)" % (n, MAX_MESSAGE))
    start = 0
    while data[start:start + 2] == b"\r\n":   # 7.5: CRLFs before the start line are ignored
        start += 2
    le = data.find(b"\r\n", start)
    if le < 0:
        raise SipError(400, "Bad message: no CRLF after start line")
    hend = data.find(b"\r\n\r\n", le)
    if hend < 0:
        raise SipError(400, "Bad message: no empty line after the headers")
    m = _start_line(data[start:le])
    if hend > le:
        s = le + 2
        crlf = data.count(b"\r\n", s, hend)
        if data.count(b"\n", s, hend) != crlf or data.count(b"\r", s, hend) != crlf:
            raise SipError(400, "Bare CR or LF in headers")
        m.headers = split_headers(data, None, s, hend)
        m._src = (data, s, hend)
    cl = _check(m)
    b0 = hend + 4
    if cl is None:
        # 18.3: no Content-Length on a datagram = the body runs to its end (RFC 2543)
        m.body = data[b0:]
    else:
        if cl > n - b0:
            raise SipError(400, "Content-Length %d larger than the body (%d)" % (cl, n - b0))
        m.body = data[b0:b0 + cl]
    if len(m.body) > MAX_BODY:
        raise SipError(413, "Request Entity Too Large (limit %d)" % MAX_BODY)
    return m


def parse_or_reply(data):
    # (msg, None) | (None, reply bytes) for a refused request | (None, None) to drop.
    try:
        return parse(data), None
    except SipError as e:
        return None, error_reply(data, e)


def _tag(b):
    # A To tag that is the same for a retransmission of the same bad request (FNV-1a).
    h = 0x811C9DC5
    for c in b:
        h = ((h ^ c) * 0x01000193) & 0xFFFFFFFF
    return b"%08x" % h


def error_reply(data, err):
    # Stateless error response to a refused request (8.2.6.1, 8.2.6.2): Via, From, To,
    # Call-ID, CSeq copied as received. None when the data is no request, is an ACK
    # (never answered, 17.2.1) or has no Via to route the reply by.
    data = bytes(data[:MAX_MESSAGE])
    start = 0
    while data[start:start + 2] == b"\r\n":
        start += 2
    le = data.find(b"\r\n", start)
    if le < 0:
        return None
    sl = data[start:le]
    method = sl.split(b" ", 1)[0]
    if sl[:4].upper() == b"SIP/" or not is_token(method) or method == b"ACK":
        return None
    hend = data.find(b"\r\n\r\n", le)
    sec = data[le + 2:hend if hend >= 0 else len(data)]
    out = [b"SIP/2.0 %d " % err.status, err.reason.encode()[:200].replace(b"\r", b" ")
           .replace(b"\n", b" "), b"\r\n"]
    has_via = False
    sec = sec.replace(b"\r\n ", b" ").replace(b"\r\n\t", b"\t")   # unfold (7.3.1)
    for line in sec.split(b"\r\n")[:MAX_HEADERS * 2]:
        name, colon, value = line.partition(b":")
        k = canon(name.rstrip(b" \t"))
        if not colon or k not in _REQUIRED or b"\r" in line or b"\n" in line:
            continue
        if k == b"via":
            has_via = True
        if k == b"to":
            try:
                params = parse_name_addr(value)[2]
                if param(params, b"tag") is None:
                    line = line.rstrip(b" \t") + b";tag=" + _tag(sec)
            except SipError:
                pass
        out.append(line)
        out.append(b"\r\n")
    if not has_via:
        return None
    out.append(b"Content-Length: 0\r\n\r\n")
    return b"".join(out)
