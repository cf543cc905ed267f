# SIP message model, parser and serializer basics (RFC 3261 7, 8.2.6.2, 20).
from util import raises

from sipling.sip.message import SipError, request, response
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


FOLDED = (b"INVITE sip:bob@example.com SIP/2.0\r\n"
          b"v: SIP/2.0/UDP pc33.example.com;branch=z9hG4bK776asdhds ,\r\n"
          b"   SIP/2.0/TCP proxy.example.com;branch=z9hG4bK2\r\n"
          b"Max-Forwards:70\r\n"
          b"t: <sip:bob@example.com>\r\n"
          b"f :  \"Alice\" <sip:alice@example.com> ;tag=1928301774\r\n"
          b"i: a84b4c76e66710@pc33\r\n"
          b"CSeq: 314159 INVITE\r\n"
          b"Security-Server: ipsec-3gpp; q=0.1 ;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222,\r\n"
          b"\tdigest;d-qop=auth;q=0.2 ;d-ver=\"0123456789abcdef0123456789abcdef\"\r\n"
          b"Security-Server:tls;q=0.3\r\n"
          b"k: sec-agree\r\n"
          b"WWW-Authenticate: Digest realm=\"a,b\", nonce=\"x\"\r\n"
          b"c: text/plain\r\n"
          b"l:   5 \r\n\r\nhello")


def test_compact_forms_and_case():
    m = parse(FOLDED)
    for short, long in (("v", "Via"), ("t", "TO"), ("f", "from"), ("i", "call-id"),
                        ("k", "Supported"), ("c", "content-type"), ("l", "CONTENT-length")):
        assert m.get(short) == m.get(long) and m.get(long) is not None, long
    assert m.get("m") is None and m.get("contact") is None
    assert m.get_all("supported") == [b"sec-agree"]
    assert [v.host for v in m.vias()] == [b"pc33.example.com", b"proxy.example.com"]
    assert m.from_addr()[0] == b"Alice" and m.from_tag() == b"1928301774"
    assert m.body == b"hello"


def test_header_lines_exact_and_get_all_split():
    m = parse(FOLDED)
    # Security-Verify must echo Security-Server byte for byte: header_lines keeps folding
    assert m.header_lines("security-server") == [
        b"ipsec-3gpp; q=0.1 ;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222,\r\n"
        b"\tdigest;d-qop=auth;q=0.2 ;d-ver=\"0123456789abcdef0123456789abcdef\"",
        b"tls;q=0.3"]
    assert m.get_all("Security-Server") == [
        b"ipsec-3gpp; q=0.1 ;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222",
        b"digest;d-qop=auth;q=0.2 ;d-ver=\"0123456789abcdef0123456789abcdef\"", b"tls;q=0.3"]
    # not a comma list: the commas are inside the one challenge
    assert m.get_all("www-authenticate") == [b'Digest realm="a,b", nonce="x"']
    req = request("REGISTER", "sip:h", [])
    for line in m.header_lines("security-server"):
        req.add("Security-Verify", line)
    w = req.serialize()
    assert b"Security-Verify: ipsec-3gpp; q=0.1 ;alg=hmac-sha-1-96;spi-c=1111;spi-s=2222,\r\n\tdigest" in w


def test_unmodified_folded_message_byte_exact():
    m = parse(FOLDED)
    assert m.serialize() == FOLDED
    assert parse(m.serialize()) == m


def test_modified_headers_and_content_length():
    m = parse(FOLDED)
    m.set("Max-Forwards", "69")
    m.add("Via", "SIP/2.0/UDP me.example.com;branch=z9hG4bKnew", first=True)
    m.remove("k")
    m.body = b"hello world"
    w = m.serialize()
    assert w.startswith(b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP me.example.com;branch=z9hG4bKnew\r\n")
    assert b"Max-Forwards: 69\r\n" in w and b"k: sec-agree" not in w
    assert b"l: 11\r\n\r\nhello world" in w
    # untouched lines are still as received
    assert b"f :  \"Alice\" <sip:alice@example.com> ;tag=1928301774\r\n" in w
    p = parse(w)
    assert p == m and p.via_branch() == b"z9hG4bKnew" and m.via_branch() == b"z9hG4bKnew"
    assert p.max_forwards() == 69 and len(p.get_all("via")) == 3


def test_set_remove_add():
    m = request("OPTIONS", "sip:h", [("Route", "<sip:a>"), ("X", "1"), ("route", "<sip:b>")])
    m.set("ROUTE", "<sip:c>")
    assert m.headers == [[b"Route", b"<sip:c>"], [b"X", b"1"]]
    assert m.remove("x") == 1 and m.remove("x") == 0
    m.set("Y", b"2")
    assert m.headers[-1] == [b"Y", b"2"]
    assert raises(ValueError, m.add, "Z", "a\r\nInjected: 1")
    m.add("Z", "a\r\n b")      # folding is fine
    assert m.get("z") == b"a b"


def test_response_keeps_existing_to_tag_and_all_vias():
    m = parse(FOLDED)
    r = response(m, 180, "Ringing", to_tag="x")
    assert r.to_tag() == b"x" and r.header_lines("v") == m.header_lines("v")
    assert [h[0] for h in r.headers] == [b"v", b"t", b"f", b"i", b"CSeq"]
    r2 = response(parse(r.serialize().replace(b"SIP/2.0 180 Ringing", b"SIP/2.0 200 OK")),
                  200, "OK", to_tag="y")
    assert r2.to_tag() == b"x"


def test_limits():
    from sipling.sip import parser
    big = REG.replace(b"Content-Length: 0\r\n\r\n", b"Content-Length: 0\r\n\r\n" + b"x" * parser.MAX_MESSAGE)
    e = raises(SipError, parse, big)
    assert e.status == 513 and "Message Too Large" in e.reason
    msg, reply = parse_or_reply(big)
    assert reply.startswith(b"SIP/2.0 513 Message Too Large")
    many = REG.replace(b"Expires:", b"X-A: 1\r\n" * parser.MAX_HEADERS + b"Expires:")
    e = raises(SipError, parse, many)
    assert e.status == 400 and "header fields" in e.reason
    long = REG.replace(b"Expires:  7200", b"Expires: " + b"7" * parser.MAX_LINE)
    e = raises(SipError, parse, long)
    assert e.status == 400 and "longer than" in e.reason
    body = REG.replace(b"Content-Length: 0", b"Content-Length: %d" % (parser.MAX_BODY + 1))
    e = raises(SipError, parse, body + b"x" * (parser.MAX_BODY + 1))
    assert e.status == 413


def test_malformed_inputs_only_sip_error():
    for data in (b"", b"\r\n", b"INVITE", b"INVITE sip:a SIP/2.0\r\n", b"\x00\xff\r\n\r\n",
                 b"SIP/2.0 200\r\n\r\n", b"INVITE sip:a SIP/2.0\r\n: x\r\n\r\n",
                 b"INVITE sip:a SIP/2.0\r\n x\r\n\r\n", b"INVITE sip:a SIP/2.0\r\nA\nB: 1\r\n\r\n",
                 REG.replace(b"REGISTER sip", b"REGISTER\tsip"), REG.replace(b"\r\n", b"\n")):
        e = raises(SipError, parse, data)
        assert e.status in (400, 505), data
        msg, reply = parse_or_reply(data)
        assert msg is None


def test_ack_and_response_never_answered():
    ack = REG.replace(b"REGISTER sip", b"ACK sip").replace(b"1826 REGISTER", b"1826 INVITE")
    assert parse_or_reply(ack) == (None, None)
    assert parse_or_reply(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h\r\n\r\n") == (None, None)


def test_leading_crlf_and_no_content_length_datagram():
    m = parse(b"\r\n\r\n" + REG.replace(b"Content-Length: 0\r\n", b"") + b"body")
    assert m.body == b"body" and m.get("content-length") is None
    assert m.serialize().endswith(b"Content-Length: 4\r\n\r\nbody")


def test_status_code_range():
    for code in (b"099", b"700", b"999", b"20", b"2000", b"abc"):
        e = raises(SipError, parse, b"SIP/2.0 " + code + b" X\r\nVia: SIP/2.0/UDP h\r\n\r\n")
        assert e.status == 400 and "status code" in e.reason, code
    ok = REG.replace(b"REGISTER sip:registrar.example.com SIP/2.0", b"SIP/2.0 699 Whatever")
    assert parse(ok).status == 699
    ok = REG.replace(b"REGISTER sip:registrar.example.com SIP/2.0", b"SIP/2.0 100")
    m = parse(ok)
    assert m.status == 100 and m.reason == b""
