# Via header values (RFC 3261 20.42, 18.2.1, 25.1; RFC 3581 rport).
from micropython import const

from sipling.sip.error import SipError
from sipling.sip.lex import (unfold, is_token, split_top, parse_params, param, hostport)

_COMMA = const(44)


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
    host, port = hostport(sent_by, 0, len(sent_by))
    t = rest[0]
    u = t.upper()
    return Via(t if u == t else u, host, port, parse_params(b[semi:]) if semi >= 0 else [])


def parse_via_list(b):
    # Via = ( "Via" / "v" ) HCOLON via-parm *(COMMA via-parm); empty elements are errors.
    if b"," not in b:
        return [parse_via(b)]
    return [parse_via(p) for p in split_top(unfold(b), _COMMA)]
