# RFC 3261 section 24 example flows (tests/vectors/rfc3261, see its README.md): each
# message parsed whole, byte by byte through the stream framer and with trailing garbage.
from util import raises, vector, listdir

from sipling.sip.message import SipError, response
from sipling.sip.parser import parse
from sipling.sip.framer import StreamFramer

D = "rfc3261/"
GARBAGE = b"garbage after the message\r\n"


def _msgs():
    # (name, bytes) with a "(... SDP not shown)" placeholder swapped for Content-Length octets
    out = []
    for n in listdir(D):
        if not n.endswith(".sip"):
            continue
        data = vector(D + n)
        if b"SDP not shown)" in data:
            head = data[:data.find(b"\r\n\r\n") + 4]
            cl = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
            data = head + b"v=0 filler " + b"x" * (cl - 11)
        out.append((n, data))
    return out


def test_sixteen_messages():
    assert len(_msgs()) == 16


def test_placeholder_bodies_are_refused_as_is():
    for n in listdir(D):
        data = vector(D + n) if n.endswith(".sip") else b""
        if b"SDP not shown)" in data:
            e = raises(SipError, parse, data)
            assert e.status == 400 and "Content-Length" in e.reason, n


def test_register_flow_fields():
    f1 = parse(vector(D + "24.1-F1-register.sip"))
    assert f1.method == b"REGISTER" and f1.uri == b"sip:registrar.biloxi.com"
    assert f1.via_branch() == b"z9hG4bKnashds7" and f1.top_via().port == 5060
    assert f1.cseq() == (1826, b"REGISTER") and f1.from_tag() == b"456248"
    assert f1.to_tag() is None and f1.get("expires") == b"7200"
    f2 = parse(vector(D + "24.1-F2-200.sip"))
    assert f2.status == 200 and f2.reason == b"OK"
    assert f2.top_via().received == b"192.0.2.4" and f2.via_branch() == b"z9hG4bKnashds7"
    assert f2.to_tag() == b"2493k59kd" and f2.call_id() == f1.call_id()
    # a UAS answer built from F1 carries the same Via/From/To/Call-ID/CSeq lines
    r = response(f1, 200, "OK", [("Contact", "<sip:bob@192.0.2.4>"), ("Expires", "7200")],
                 to_tag="2493k59kd")
    assert r.to_tag() == f2.to_tag() and r.header_lines("from") == f2.header_lines("from")
    assert r.header_lines("via") == f1.header_lines("via")


def test_invite_flow_fields():
    m = dict(_msgs())
    f5 = parse(m["24.2-F5-invite.sip"])
    assert [v.host for v in f5.vias()] == [b"server10.biloxi.com", b"bigbox3.site3.atlanta.com",
                                           b"pc33.atlanta.com"]
    assert [v.received for v in f5.vias()] == [None, b"192.0.2.2", b"192.0.2.1"]
    assert f5.max_forwards() == 68 and len(f5.body) == 142
    f6 = parse(m["24.2-F6-180.sip"])
    assert f6.status == 180 and f6.reason == b"Ringing" and f6.to_tag() == b"a6c85cf"
    f12 = parse(m["24.2-F12-ack.sip"])
    assert f12.cseq() == (314159, b"ACK") and f12.via_branch() == b"z9hG4bKnashds9"
    f13 = parse(m["24.2-F13-bye.sip"])
    assert f13.from_tag() == b"a6c85cf" and f13.to_tag() == b"1928301774"


def test_all_whole_roundtrip_and_garbage():
    for n, data in _msgs():
        m = parse(data)
        assert m.serialize() == data, n      # unmodified: byte for byte
        assert parse(m.serialize()) == m, n
        g = parse(data + GARBAGE)            # octets past Content-Length are dropped (18.3)
        assert g == m and g.serialize() == data, n


def test_all_through_framer():
    stream = b""
    for n, data in _msgs():
        f = StreamFramer()
        out = []
        for i in range(len(data)):
            out.extend(f.feed(data[i:i + 1]))
        assert out == [data] and f.pending() == 0, n
        stream += data + b"\r\n"             # CRLF keep-alives between messages (7.5)
    f = StreamFramer()
    out = []
    for i in range(0, len(stream), 13):
        out.extend(f.feed(stream[i:i + 13]))
    assert out == [d for _, d in _msgs()]
