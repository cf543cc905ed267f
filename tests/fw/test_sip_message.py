# SIP message model, parser and serializer basics (RFC 3261 7, 8.2.6.2, 20).
from util import raises

from sipling.sip.message import SipError, Message, request, response
from sipling.sip.parser import parse, parse_or_reply

REG = (b"REGISTER sip:registrar.example.com SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport\r\n"
       b"Max-Forwards: 70\r\n"
       b"To: Bob <sip:bob@example.com>\r\n"
       b"From: Bob <sip:bob@example.com>;tag=456248\r\n"
       b"Call-ID: 843817637684230@998sdasdh09\r\n"
       b"CSeq: 1826 REGISTER\r\n"
       b"Contact: <sip:bob@192.0.2.4>\r\n"
       b"Security-Client: ipsec-3gpp; alg=hmac-sha-1-96;spi-c=1;spi-s=2, digest\r\n"
       b"Expires:  7200 \r\n"
       b"Content-Length: 0\r\n\r\n")


def test_parse_request_fields():
    m = parse(REG)
    assert m.is_request and m.method == b"REGISTER" and m.uri == b"sip:registrar.example.com"
    assert m.status is None and m.body == b""
    assert m.get("via") == b"SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7;rport"
    assert m.get(b"v") == m.get("VIA")
    assert m.via_branch() == b"z9hG4bKnashds7"
    assert m.top_via().host == b"192.0.2.4" and m.top_via().port == 5060
    assert m.top_via().has_rport and m.top_via().rport is None
    assert m.cseq() == (1826, b"REGISTER")
    assert m.call_id() == b"843817637684230@998sdasdh09"
    assert m.from_tag() == b"456248" and m.to_tag() is None
    assert m.get("expires") == b"7200"
    assert m.get_all("security-client") == [b"ipsec-3gpp; alg=hmac-sha-1-96;spi-c=1;spi-s=2",
                                            b"digest"]


def test_serialize_is_byte_exact():
    assert parse(REG).serialize() == REG
    m = parse(REG)
    assert parse(m.serialize()) == m


def test_response_copies_headers():
    req = parse(REG)
    r = response(req, 200, "OK", [("Expires", "7200")], to_tag="abc")
    assert r.status == 200 and r.reason == b"OK" and not r.is_request
    assert r.header_lines("via") == req.header_lines("via")
    assert r.to_tag() == b"abc" and r.from_tag() == b"456248"
    p = parse(r.serialize())
    assert p == r and p.cseq() == (1826, b"REGISTER")


def test_request_builder():
    m = request("MESSAGE", "sip:owner@example.com", [
        ("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bK1"), ("From", "<sip:a@b>;tag=1"),
        ("To", "<sip:owner@example.com>"), ("Call-ID", "x1"), ("CSeq", "1 MESSAGE"),
        ("Max-Forwards", "70")], b"status")
    w = m.serialize()
    assert w.endswith(b"Content-Length: 6\r\n\r\nstatus")
    assert parse(w) == m


def test_malformed_request_gets_400_with_reason():
    bad = REG.replace(b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE")
    msg, reply = parse_or_reply(bad)
    assert msg is None
    assert reply.startswith(b"SIP/2.0 400 CSeq method does not match the request method\r\n")
    r = parse(reply)
    assert r.status == 400 and r.call_id() == b"843817637684230@998sdasdh09"
    assert r.to_tag() is not None


def test_malformed_response_dropped():
    msg, reply = parse_or_reply(b"SIP/2.0 2000 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n")
    assert msg is None and reply is None
    e = raises(SipError, parse, b"SIP/2.0 2000 OK\r\n\r\n")
    assert e.status == 400
