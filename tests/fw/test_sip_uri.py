# URIs, name-addr, Via and parameter lists (RFC 3261 19.1, 20.10, 20.42, 25.1; RFC 3581).
from util import raises

from sipling.sip.message import SipError
from sipling.sip.uri import (parse_uri, parse_name_addr, parse_via, parse_via_list, Uri,
                             parse_params, split_top, unescape)


def test_sip_uri_parts():
    u = parse_uri(b"sips:alice:secret@atlanta.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent")
    assert u.scheme == b"sips" and u.user == b"alice" and u.password == b"secret"
    assert u.host == b"atlanta.com" and u.port == 5061
    assert u.params == [(b"transport", b"tcp"), (b"lr", None)]
    assert u.param("TRANSPORT") == b"tcp" and u.param("lr") == b"" and u.param("maddr") is None
    assert u.headers == [(b"subject", b"project x"), (b"priority", b"urgent")]
    assert parse_uri(u.serialize()) == u


def test_uri_examples_rfc3261_19_1_3():
    for s, host, port in ((b"sip:alice@atlanta.com", b"atlanta.com", None),
                          (b"sip:+1-212-555-1212:1234@gateway.com;user=phone", b"gateway.com", None),
                          (b"sip:alice@192.0.2.4", b"192.0.2.4", None),
                          (b"sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com", b"atlanta.com", None),
                          (b"sip:alice;day=tuesday@atlanta.com", b"atlanta.com", None),
                          (b"sip:[2001:db8::10]:5070", b"[2001:db8::10]", 5070)):
        u = parse_uri(s)
        assert u.host == host and u.port == port, s
        assert parse_uri(u.serialize()) == u, s
    assert parse_uri(b"sip:+1-212-555-1212:1234@gateway.com;user=phone").password == b"1234"
    assert parse_uri(b"sip:alice;day=tuesday@atlanta.com").user == b"alice;day=tuesday"
    assert parse_uri(b"sip:atlanta.com;method=REGISTER?to=alice%40atlanta.com").headers == [
        (b"to", b"alice@atlanta.com")]


def test_escapes_once_and_reescaped():
    assert unescape(b"a%2541") == b"a%41"
    u = parse_uri(b"sip:%61lice%20b@h")
    assert u.user == b"alice b" and u.serialize() == b"sip:alice%20b@h"
    assert raises(SipError, parse_uri, b"sip:a%zz@h").status == 400
    assert raises(SipError, parse_uri, b"sip:a%4@h").status == 400


def test_other_schemes_are_opaque():
    u = parse_uri(b"tel:+1-201-555-0123")
    assert u.scheme == b"tel" and u.opaque == b"+1-201-555-0123" and u.host is None
    assert u.serialize() == b"tel:+1-201-555-0123"


def test_bad_uris():
    for b, what in ((b"", "empty"), (b"sip:", "host"), (b"sip:a@", "host"), (b"sip:@h", "user"),
                    (b"sip:h:99999", "port"), (b"sip:h:5x", "port"), (b"sip:h;;x", "parameter"),
                    (b"<sip:h>", "<>"), (b"sip:a b@h", "space"), (b"1x:y", "scheme"),
                    (b"sip:h?a", "header"), (b"sip:[zz]", "IPv6"), (b"x:", "empty")):
        e = raises(SipError, parse_uri, b)
        assert e.status == 400 and what in e.reason, (b, e.reason)


def test_name_addr_forms():
    d, u, p = parse_name_addr(b'"Mr. \\"Watson\\"" <sip:watson@bell.example.com>;tag=1;x')
    assert d == b'Mr. "Watson"' and u.user == b"watson" and p == [(b"tag", b"1"), (b"x", None)]
    d, u, p = parse_name_addr(b"Bob  Smith<sip:b@h>")
    assert d == b"Bob  Smith" and u.host == b"h" and p == []
    d, u, p = parse_name_addr(b"sip:b@h;tag=9")         # addr-spec: ;tag is a header param
    assert d is None and u.params == [] and p == [(b"tag", b"9")]
    d, u, p = parse_name_addr(b"<sip:b@h;lr>")
    assert d is None and u.params == [(b"lr", None)] and p == []
    d, u, p = parse_name_addr(b'<sip:b@h>;p="a;b,c"')
    assert p == [(b"p", b'"a;b,c"')]


def test_name_addr_errors():
    for b, what in ((b'"open <sip:a@h>', "unterminated"), (b"a, b <sip:a@h>", "quoted"),
                    (b"<sip:a@h", "missing >"), (b"< sip:a@h>", "space"), (b"<sip:a@h>;", "parameter"),
                    (b"<sip:a@h>;tag=", "without value"), (b"<sip:a@h> junk", "junk"),
                    (b"sip:a@h?x=y", "<>"), (b"", "empty")):
        e = raises(SipError, parse_name_addr, b)
        assert e.status == 400 and what in e.reason, (b, e.reason)


def test_via_with_lws_branch_received_rport():
    v = parse_via(b"SIP / 2.0 / udp  host.example.com : 5070 ; Branch = z9hG4bK1 ;received=192.0.2.1;rport=4000")
    assert v.transport == b"UDP" and v.host == b"host.example.com" and v.port == 5070
    assert v.branch == b"z9hG4bK1" and v.received == b"192.0.2.1"
    assert v.has_rport and v.rport == 4000
    assert parse_via(v.serialize()) == v
    v = parse_via(b"SIP/2.0/TCP [2001:db8::9];rport;branch=z9hG4bKx")
    assert v.host == b"[2001:db8::9]" and v.port is None and v.has_rport and v.rport is None
    w = parse_via(b"SIP/2.0/UDP h")
    assert w.branch is None and not w.has_rport and w.received is None


def test_via_list_and_errors():
    vs = parse_via_list(b"SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b:5061;branch=z9hG4bK2")
    assert [(v.host, v.port) for v in vs] == [(b"a", None), (b"b", 5061)]
    assert raises(SipError, parse_via, b"SIP/3.0/UDP h").status == 505
    for b in (b"SIP/2.0/UDP", b"SIP/2.0 UDP h", b"SIP/2.0/UDP h;", b"SIP/2.0/UDP h;branch=",
              b"HTTP/2.0/UDP h", b"SIP/2.0/UDP h:x"):
        assert raises(SipError, parse_via, b).status == 400, b
    assert raises(SipError, parse_via_list, b"SIP/2.0/UDP a,,SIP/2.0/UDP b").status == 400


def test_split_top_and_params():
    assert split_top(b'a, "b,c" ,<sip:x;a=1,2>, d', 44) == [b"a", b' "b,c" ', b"<sip:x;a=1,2>", b" d"]
    assert split_top(b"a;b;c", 59) == [b"a", b"b", b"c"]
    assert parse_params(b" ; a = 1 ;b; c=\"x y\"") == [(b"a", b"1"), (b"b", None), (b"c", b'"x y"')]
    assert raises(SipError, split_top, b'a,"b', 44).status == 400


def test_uri_equality_and_build():
    u = Uri(b"sip", user=b"a b", host=b"h", port=5060, params=[(b"lr", None)])
    assert u.serialize() == b"sip:a%20b@h:5060;lr"
    assert parse_uri(u.serialize()) == u
    assert u != parse_uri(b"sip:a%20b@h;lr")
