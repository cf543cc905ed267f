# RFC 4475 torture messages (tests/vectors/rfc4475, see its README.md and MANIFEST.tsv).
# Each vector is run whole as a datagram, byte by byte through the stream framer (where it
# is framable), and with trailing garbage; the expectations follow MANIFEST.tsv's
# "expected" column: valid ones parse with the listed field values, invalid ones are
# refused with the stated status (requests get a reply, responses are dropped).
from util import raises, vector, listdir

from sipling.sip.message import SipError
from sipling.sip.parser import parse, parse_or_reply
from sipling.sip.framer import StreamFramer
from sipling.sip.uri import parse_name_addr

D = "rfc4475/"
GARBAGE = b"\x00garbage\xff INVITE sip:x SIP/2.0\r\n"


def _na(m, name, i=0):
    return parse_name_addr(m.get_all(name)[i])


# -- field checks for the vectors that must parse (MANIFEST "expected") ----------------
def c_wsinv(m):
    assert m.method == b"INVITE" and m.request_uri().param("unknownparam") == b""
    assert m.max_forwards() == 68 and m.cseq() == (9, b"INVITE")
    assert m.get("subject") == b"" and m.get("s") == b""
    assert m.get("UnknownHeaderWithUnusualValue") == b";;,,;;,;"
    assert m.header_lines("unknownheaderwithunusualvalue") == [b";;,,;;,;"]
    assert m.get("newfangledheader") == b"newfangled value continued newfangled value"
    assert m.to_tag() == b"1918181833n" and m.from_tag() == b"98asjd8"
    assert m.from_addr()[0] == b'J Rosenberg \\"'
    assert m.from_addr()[1].user == b"jdrosen"
    vs = m.vias()
    assert [(v.transport, v.host, v.branch) for v in vs] == [
        (b"UDP", b"192.0.2.2", b"390skdjuw"), (b"TCP", b"spindle.example.com", b"z9hG4bK9ikj8"),
        (b"UDP", b"192.168.255.111", b"z9hG4bK30239")]
    assert m.via_branch() == b"390skdjuw"
    d, u, p = _na(m, "contact")
    assert d == b'Quoted string ""' and u.user == b"jdrosen"
    assert p == [(b"newparam", b"newvalue"), (b"secondparam", None), (b"q", b"0.33")]
    r = _na(m, "route")[1]
    assert r.host == b"services.example.com" and r.param("lr") == b""
    assert r.param("unknownwith") == b"value" and r.param("unknown-no-value") == b""
    assert len(m.body) == 150 and m.body.startswith(b"v=0\r\n")
    assert m.get("content-type") == b"application/sdp"


def c_intmeth(m):
    meth = b"!interesting-Method0123456789_*+`.%indeed'~"
    assert m.method == meth and m.cseq() == (139122385, meth)
    u = m.request_uri()
    assert u.user == b"1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert u.password == b"&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert u.host == b"example.com" and u.params == []
    assert m.to_addr()[0] == b"BEL:\x07 NUL:\x00 DEL:\x7f"
    assert m.from_addr()[0] == b"token1~` token2'+_ token3*%!.-"
    assert m.from_tag() == b"_token~1'+`*%!-."
    assert m.call_id() == b"intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert m.get("extensionHeader-!.%*+_`'~") == b"\xef\xbb\xbf\xe5\xa4\xa7\xe5\x81\x9c\xe9\x9b\xbb"
    assert m.via_branch() == b"z9hG4bK-.!%66*_+`'~"


def c_esc01(m):
    assert m.request_uri().user == b"sips:user@example.com"
    assert m.request_uri().host == b"example.net"
    assert m.to_addr()[1].user == b"user" and m.from_addr()[1].user == b"I have spaces"
    u = _na(m, "contact")[1]
    assert u.user == b"caller" and u.params == [(b"lr", None), (b"name", b"value%41")]


def c_escnull(m):
    assert m.to_addr()[1].user == b"null-\x00-null" and m.from_addr()[1].user == b"null-\x00-null"
    cs = [_na(m, "contact", i)[1] for i in range(2)]
    assert [c.user for c in cs] == [b"\x00", b"\x00\x00"] and cs[0] != cs[1]


def c_esc02(m):
    assert m.method == b"RE%47IST%45R" and m.method != b"REGISTER"
    assert m.to_addr()[0] == b"%Z%45" and m.from_addr()[0] == b"%Z%45"
    assert [parse_name_addr(c)[1].host for c in m.get_all("contact")] == [
        b"host1.example.com", b"host3.example.com"]
    assert m.get("C%6Fntact") == b"<sip:alias2@host2.example.com>"


def c_lwsdisp(m):
    assert m.from_addr()[0] == b"caller" and m.from_tag() == b"323"


def c_longreq(m):
    assert m.to_addr()[0].startswith(b"I have a user name of extremeextreme")
    assert m.to_addr()[1].port == 6000
    assert m.to_addr()[1].param("longparamnamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamenamename") == b"shortvalue"
    vs = m.vias()
    assert len(vs) == 34 and vs[0].host == b"sip33.example.com"
    assert vs[-1].host == b"host.example.com" and vs[-1].received == b"192.0.2.5"
    assert len(m.body) == 150


def c_dblreq(m):
    assert m.method == b"REGISTER" and m.body == b"" and m.cseq() == (8, b"REGISTER")
    assert b"INVITE" not in m.serialize()


def c_semiuri(m):
    u = m.request_uri()
    assert u.user == b"user;par=u@example.net" and u.host == b"example.com" and u.params == []
    assert m.get_all("accept") == [b"application/sdp", b"application/pkcs7-mime",
                                   b"multipart/mixed", b"multipart/signed", b"message/sip",
                                   b"message/sipfrag"]


def c_transports(m):
    assert [v.transport for v in m.vias()] == [b"UDP", b"SCTP", b"TLS", b"UNKNOWN", b"TCP"]
    assert m.call_id() == b"transports.kijh4akdnaqjkwendsasfdj"


def c_mpart01(m):
    assert len(m.body) == 553 and b"\x00" in m.body
    assert m.get("content-type") == b"multipart/mixed;boundary=7a9cbec02ceef655"


def c_unreason(m):
    assert m.status == 200 and m.reason.startswith(b"= 2**3 * 5**2 \xd0\xbd\xd0\xbe")
    assert m.reason.endswith(b" - \xd0\xbf\xd1\x80\xd0\xbe\xd1\x81\xd1\x82\xd0\xbe\xd0\xb5") and len(m.body) == 154


def c_noreason(m):
    assert m.status == 100 and m.reason == b""


def c_baddate(m):
    # MANIFEST: "may reject ... but should not unless Date matters": kept as opaque bytes.
    assert m.get("date") == b"Fri, 01 Jan 2010 16:00:00 EST"


def c_unkscm(m):
    u = m.request_uri()
    assert u.scheme == b"nobodyknowsthisscheme" and u.opaque == b"totallyopaquecontent"


def c_novelsc(m):
    u = m.request_uri()
    assert u.scheme == b"soap.beep" and u.opaque == b"//192.0.2.103:3002"


def c_unksm2(m):
    assert m.to_addr()[1].scheme == b"isbn" and m.to_addr()[1].opaque == b"2983792873"
    assert m.from_addr()[1].scheme == b"http" and m.from_tag() == b"3234233"
    assert _na(m, "contact")[1].serialize() == b"name:John_Smith"


def c_bext01(m):
    assert m.get_all("require") == [b"nothingSupportsThis", b"nothingSupportsThisEither"]
    assert m.get_all("proxy-require") == [b"noProxiesSupportThis", b"norDoAnyProxiesSupportThis"]


def c_invut(m):
    assert m.get("content-type") == b"application/unknownformat" and len(m.body) == 40


def c_regaut01(m):
    assert m.get("authorization") == b"NoOneKnowsThisScheme opaque-data=here"
    assert m.get_all("authorization") == [b"NoOneKnowsThisScheme opaque-data=here"]


def c_bcast(m):
    assert [v.host for v in m.vias()] == [b"192.0.2.198", b"255.255.255.255"]


def c_zeromf(m):
    assert m.max_forwards() == 0


def c_cparam01(m):
    d, u, p = _na(m, "contact")
    assert u.params == [] and p == [(b"unknownparam", None)] and u.user == b"+19725552222"


def c_cparam02(m):
    d, u, p = _na(m, "contact")
    assert u.params == [(b"unknownparam", None)] and p == []


def c_regescrt(m):
    u = _na(m, "m")[1]
    assert u.headers == [(b"Route", b"<sip:sip.example.com>")]
    assert u.serialize() == b"sip:user@example.com?Route=%3Csip:sip.example.com%3E"


def c_sdp01(m):
    assert m.get("accept") == b"text/nobodyKnowsThis" and len(m.body) == 150


def c_inv2543(m):
    # RFC 2543 compatibility: no branch, no From tag, no Max-Forwards, no Content-Length
    # (the body is the rest of the datagram).
    assert m.via_branch() is None and m.from_tag() is None and m.max_forwards() is None
    assert m.get("content-length") is None and m.body.startswith(b"v=0\r\n")
    assert m.body.endswith(b"m=audio 49217 RTP/AVP 0\r\n")


# name -> check function (must parse) | (status, phrase part) refused request | "drop"
EXPECT = {
    "wsinv": c_wsinv, "intmeth": c_intmeth, "esc01": c_esc01, "escnull": c_escnull,
    "esc02": c_esc02, "lwsdisp": c_lwsdisp, "longreq": c_longreq, "dblreq": c_dblreq,
    "semiuri": c_semiuri, "transports": c_transports, "mpart01": c_mpart01,
    "unreason": c_unreason, "noreason": c_noreason,
    "badinv01": (400, "empty or invalid parameter"),
    "clerr": (400, "Content-Length 9999 larger than the body"),
    "ncl": (400, "Bad Content-Length"),
    "scalar02": (400, "CSeq: number out of range"),
    "scalarlg": "drop",
    "quotbal": (400, "unterminated quoted string"),
    "ltgtruri": (400, "Request-URI: enclosed in <>"),
    "lwsruri": (400, "Bad Request-Line"),
    "lwsstart": (400, "Bad Request-Line"),
    "trws": (400, "Bad Request-Line"),
    "escruri": (400, "Request-URI: contains headers"),
    "baddate": c_baddate,
    "regbadct": (400, "URI with headers needs <>"),
    "badaspec": (400, "space inside <>"),
    "baddn": (400, "no empty line after the headers"),
    "badvers": (505, "Version Not Supported"),
    "mismatch01": (400, "CSeq method does not match"),
    "mismatch02": (400, "CSeq method does not match"),
    "bigcode": "drop",
    "badbranch": (400, "branch is only the magic cookie"),
    "insuf": (400, "Missing From header"),
    "unkscm": c_unkscm, "novelsc": c_novelsc, "unksm2": c_unksm2, "bext01": c_bext01,
    "invut": c_invut, "regaut01": c_regaut01,
    "multi01": (400, "Duplicate"),
    "mcl01": (400, "Conflicting Content-Length values"),
    "bcast": c_bcast, "zeromf": c_zeromf, "cparam01": c_cparam01, "cparam02": c_cparam02,
    "regescrt": c_regescrt, "sdp01": c_sdp01, "inv2543": c_inv2543,
}

# Stream framing outcome (RFC 3261 18.3): framed whole unless listed here.
STREAM = {
    "clerr": "wait",     # Content-Length 9999 > bytes sent: keep waiting (RFC 4475 3.1.2.2)
    "baddn": "wait",     # header section never terminated
    "ncl": "error",      # negative Content-Length: unrecoverable framing error
    "mcl01": "error",    # conflicting Content-Length values
    "inv2543": "error",  # no Content-Length: not allowed on a stream
}


def _names():
    return [n[:-4] for n in listdir(D) if n.endswith(".dat")]


def test_every_vector_has_an_expectation():
    names = _names()
    assert len(names) == 49
    assert sorted(names) == sorted(EXPECT.keys())
    manifest = vector(D + "MANIFEST.tsv").split(b"\n")[1:]
    listed = [ln.split(b"\t")[0].decode() for ln in manifest if ln and b"/" not in ln.split(b"\t")[0]]
    assert sorted(listed) == sorted(names)


def _check(name, data, garbage=False):
    exp = EXPECT[name]
    if callable(exp):
        m, reply = parse_or_reply(data)
        assert reply is None, name
        exp(m)
        # round trip: re-emission is byte for byte up to the end of the message
        w = m.serialize()
        if name != "inv2543":
            assert data.startswith(w), name
        assert parse(w) == m, name
        return
    e = raises(SipError, parse, data)
    m, reply = parse_or_reply(data)
    assert m is None
    if exp == "drop":
        assert reply is None, name
        return
    status, phrase = exp
    assert e.status == status and phrase in e.reason, (name, e.status, e.reason)
    assert reply.startswith(b"SIP/2.0 %d " % status), name
    assert phrase.encode() in reply.split(b"\r\n", 1)[0], name
    assert b"\r\nCall-ID:" in reply or b"\r\ni:" in reply or name == "insuf", name


def test_vectors_whole():
    for name in _names():
        _check(name, vector(D + name + ".dat"))


def test_vectors_with_trailing_garbage():
    for name in _names():
        data = vector(D + name + ".dat")
        if name == "inv2543":
            # no Content-Length: the garbage is body (RFC 3261 18.3 on UDP)
            m = parse(data + GARBAGE)
            assert m.body.endswith(GARBAGE)
            continue
        _check(name, data + GARBAGE, True)


def _frame(data, step):
    # -> (framer, messages, SipError or None); stops at the first framing error
    f = StreamFramer()
    out = []
    try:
        for i in range(0, len(data), step):
            out.extend(f.feed(data[i:i + step]))
    except SipError as e:
        return f, out, e
    return f, out, None


def test_vectors_byte_by_byte_through_framer():
    for name in _names():
        data = vector(D + name + ".dat")
        how = STREAM.get(name, "frame")
        f, out, err = _frame(data, 1)
        if how == "error":
            assert out == [] and err is not None and err.status == 400, name
            continue
        if how == "wait":
            assert out == [] and err is None and f.pending() > 0, name
            continue
        assert len(out) >= 1 and data.startswith(out[0]), name
        if name == "dblreq":
            # On a stream the trailing INVITE is a second message (Content-Length 150);
            # the 5 octets after its body ("C" CRLF CRLF) are a header section without
            # Content-Length: a framing error.
            assert len(out) == 2 and out[1].startswith(b"INVITE sip:joe@example.com")
            assert parse(out[1]).cseq() == (8, b"INVITE")
            assert err is not None and "Missing Content-Length" in err.reason
        else:
            assert len(out) == 1 and err is None, name
        # the framed bytes give the same outcome as the datagram
        _check(name, out[0])


def test_vectors_framer_with_garbage_and_chunks():
    for name in _names():
        if STREAM.get(name, "frame") != "frame" or name == "dblreq":
            continue
        data = vector(D + name + ".dat")
        f, out, err = _frame(data + GARBAGE, 7)
        assert len(out) == 1 and err is None and data.startswith(out[0]), name
        assert f.pending() == len(data) - len(out[0]) + len(GARBAGE), name


def test_baddn_display_names_refused_once_terminated():
    # MANIFEST: the archive file lacks the final empty line; with it, the unquoted
    # display names with "," are what gets the 400.
    data = vector(D + "baddn.dat") + b"\r\n"
    e = raises(SipError, parse, data)
    assert e.status == 400 and "display name must be quoted" in e.reason
