# Content-Length framing of SIP messages over a byte stream (RFC 3261 18.3, 7.5, 20.14).
#
# feed() takes bytes in any chunking and returns the complete messages (start line through
# the end of the body) found so far. CRLFs between messages (RFC 5626 keep-alives, 7.5)
# are skipped. A stream message must carry Content-Length; a missing, negative, non-numeric
# or conflicting one, or a header section over the limit, is an unrecoverable framing
# error: SipError, after which the connection should be closed (RFC 4475 3.1.2.3, 3.3.9).
from sipling.sip.error import SipError
from sipling.sip.message import canon
from sipling.sip.parser import MAX_MESSAGE, MAX_BODY


def content_length(buf, pos=0, end=-1):
    # Content-Length of the header section buf[pos:end] (between start line and CRLF CRLF),
    # None when absent. Only lines starting with c/C/l/L are looked at; no copies.
    if end < 0:
        end = len(buf)
    cl = None
    while pos < end:
        e = buf.find(b"\r\n", pos, end)
        if e < 0:
            e = end
        while e + 2 < end and (buf[e + 2] == 32 or buf[e + 2] == 9):   # folded (7.3.1)
            e = buf.find(b"\r\n", e + 2, end)
            if e < 0:
                e = end
        c = buf[pos] | 32
        if c == 99 or c == 108:
            colon = buf.find(b":", pos, e)
            if colon > pos and canon(buf[pos:colon].rstrip(b" \t")) == b"content-length":
                value = buf[colon + 1:e].replace(b"\r\n", b"").strip(b" \t")
                if not value.isdigit() or len(value) > 9:
                    raise SipError(400, "Bad Content-Length")
                n = int(value)
                if cl is not None and n != cl:
                    raise SipError(400, "Conflicting Content-Length values")
                cl = n
        pos = e + 2
    return cl


class StreamFramer:
    def __init__(self, max_message=MAX_MESSAGE):
        self.max_message = max_message
        self._buf = b""
        self._need = -1     # total length of the message at the head of _buf, once known
        self._scan = 0      # where the search for CRLF CRLF resumes

    def pending(self):
        # Bytes held that are not yet a complete message.
        return len(self._buf)

    def feed(self, data):
        if data:
            self._buf = self._buf + bytes(data) if self._buf else bytes(data)
        out = []
        while True:
            m = self._next()
            if m is None:
                return out
            out.append(m)

    def _next(self):
        buf = self._buf
        if self._need < 0:
            i = 0
            while buf[i:i + 2] == b"\r\n":
                i += 2
            if i:
                buf = self._buf = buf[i:]
                self._scan = 0
            if buf == b"\r":
                return None
            hend = buf.find(b"\r\n\r\n", self._scan)
            if hend < 0:
                self._scan = len(buf) - 3 if len(buf) > 3 else 0
                if len(buf) > self.max_message:
                    raise SipError(513, "Message Too Large (no end of headers within %d bytes)"
                                   % self.max_message)
                return None
            le = buf.find(b"\r\n")
            cl = content_length(buf, le + 2, hend) if le < hend else None
            if cl is None:
                raise SipError(400, "Missing Content-Length on a stream transport")
            if cl > MAX_BODY:
                raise SipError(413, "Request Entity Too Large (body %d, limit %d)"
                               % (cl, MAX_BODY))
            self._need = hend + 4 + cl
            if self._need > self.max_message:
                raise SipError(513, "Message Too Large (%d bytes, limit %d)"
                               % (self._need, self.max_message))
        if len(buf) < self._need:
            return None
        n = self._need
        self._need = -1
        self._scan = 0
        self._buf = buf[n:]
        return buf[:n]
