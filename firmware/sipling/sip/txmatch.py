# Transaction matching keys and the ACK for a non-2xx final response (RFC 3261 17.1.1.3,
# 17.1.3, 17.2.3). Keys are plain tuples of bytes/ints so they can index a dict.
from micropython import const

from sipling.sip import message
from sipling.sip.uri import split_top, unfold

MAGIC = b"z9hG4bK"  # RFC 3261 8.1.1.7 branch magic cookie
_COMMA = const(44)


def new_branch(rand):
    """A fresh RFC 3261 branch: magic cookie + 16 hex digits from rand(n) -> bytes."""
    import binascii
    return MAGIC + binascii.hexlify(rand(8))


def client_key(msg):
    """17.1.3: a response matches the client transaction whose request had the same top
    Via branch and whose method equals the CSeq method (CANCEL is its own transaction).
    Works for the request we send and for responses; None when there is no branch."""
    b = msg.via_branch()
    if not b:
        return None
    return (b, msg.cseq()[1])


def _sent_by(via):
    return (via.host.lower(), via.port)


def server_key(msg):
    """17.2.3 with the magic cookie: branch + sent-by + method, ACK mapped to INVITE.
    Without the cookie (RFC 2543 peers) see key_2543(). Returns None for 2543 requests."""
    via = msg.top_via()
    b = via.branch if via is not None else None
    if not b or not b.startswith(MAGIC):
        return None
    m = msg.method
    if m == b"ACK":
        m = b"INVITE"
    h, p = _sent_by(via)
    return (b, h, p, m)


def key_2543(msg, to_tag=None):
    """17.2.3 fallback for branches without the cookie: Request-URI, To tag, From tag,
    Call-ID, CSeq number and method, top Via. An ACK matches its INVITE (method INVITE) and
    carries the To tag of the response the server sent, so the INVITE transaction is also
    indexed with `to_tag` set to that tag (see TransactionLayer)."""
    num, m = msg.cseq()
    if m == b"ACK":
        m = b"INVITE"
    tt = msg.to_tag() if to_tag is None else to_tag
    via = msg.top_via()
    return (b"2543", msg.uri, tt or b"", msg.from_tag() or b"", msg.call_id() or b"", num, m,
            via.serialize() if via is not None else b"")


def cancel_target_key(cancel):
    """Key of the INVITE server transaction a CANCEL refers to (RFC 3261 9.2: same matching
    as 17.2.3 except the method)."""
    k = server_key(cancel)
    if k is not None:
        return (k[0], k[1], k[2], b"INVITE")
    k = key_2543(cancel)
    return k[:6] + (b"INVITE",) + k[7:]


def _first_value(v):
    return split_top(unfold(v), _COMMA)[0].strip(b" \t")


def ack_for(req, resp):
    """17.1.1.3: the ACK for a non-2xx final response to `req`: same Request-URI, Call-ID,
    From and CSeq number (method ACK), To from the response (with its tag), only the top
    Via of the request (same branch), the request's Route header fields."""
    hs = []
    v = req.header_lines(b"via")
    if v:
        hs.append((b"Via", _first_value(v[0])))
    hs.append((b"Max-Forwards", b"70"))
    for name in (b"route",):
        for r in req.header_lines(name):
            hs.append((b"Route", r))
    hs.append((b"From", req.header_lines(b"from")[0]))
    hs.append((b"To", resp.header_lines(b"to")[0]))
    hs.append((b"Call-ID", req.header_lines(b"call-id")[0]))
    hs.append((b"CSeq", b"%d ACK" % req.cseq()[0]))
    return message.request(b"ACK", req.uri, hs)
