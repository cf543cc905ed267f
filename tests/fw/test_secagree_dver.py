# RFC 3329 2.2 d-ver against known answers derived by hand (tests/vectors/secagree/README.md).
from util import raises
from secagree_util import kat

from sipling.secagree import dver


def _s(d, k):
    v = d.get(k)
    return v


def test_rfc2617_example_response():
    # The request-digest that d-ver reuses, checked against RFC 2617 section 3.5.
    d = kat("rfc2617-3.5")
    r = dver.request_digest(b"MD5", d["username"], d["realm"], d["password"], d["nonce"],
                            d["method"], d["uri"], d["qop"], d["cnonce"], d["nc"])
    assert r == d["answer"]


def test_dver_known_answer_qop_auth():
    d = kat("secagree-auth")
    lines = d["sec-server"]
    assert len(lines) == 2 and b"\t" in lines[1]
    assert dver.security_server_value(lines) == (
        b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=null;spi-c=11111;spi-s=22222;port-c=5063;"
        b"port-s=5065,digest;q=0.2; d-alg=MD5; d-qop=auth")
    r = dver.d_ver(lines, b"MD5", d["username"], d["realm"], d["password"], d["nonce"],
                   d["method"], d["uri"], d["qop"], d["cnonce"], d["nc"])
    assert r == d["answer"]
    # the same inputs without the Security-Server give the plain response, not d-ver
    p = dver.request_digest(b"MD5", d["username"], d["realm"], d["password"], d["nonce"],
                            d["method"], d["uri"], d["qop"], d["cnonce"], d["nc"])
    assert p == d["plain-response"] and p != r


def test_dver_known_answer_without_qop():
    d = kat("secagree-noqop")
    r = dver.d_ver([d["sec-server"]], b"MD5", d["username"], d["realm"], d["password"],
                   d["nonce"], d["method"], d["uri"])
    assert r == d["answer"]


def test_lws_folding_is_what_changes_nothing():
    d = kat("secagree-auth")
    args = (b"MD5", d["username"], d["realm"], d["password"], d["nonce"], d["method"],
            d["uri"], d["qop"], d["cnonce"], d["nc"])
    a = dver.d_ver(d["sec-server"], *args)
    # folding CRLF + SP and runs of blanks collapse to one SP: same d-ver
    folded = [d["sec-server"][0], b"digest;q=0.2;\r\n  d-alg=MD5;   d-qop=auth"]
    assert dver.d_ver(folded, *args) == a
    # but removing the space entirely is a different Security-Server value
    tight = [d["sec-server"][0], b"digest;q=0.2;d-alg=MD5;d-qop=auth"]
    assert dver.d_ver(tight, *args) != a
    # one comma-joined line is the same field value as two lines
    assert dver.d_ver([b",".join(d["sec-server"])], *args) == a


def test_md5_sess_and_auth_int_follow_rfc2617():
    h = dver.H
    ha1 = h(h(b"u:r:p") + b":n:c")
    ha2 = h(b"REGISTER:sip:x:" + h(b"body") + b":digest;q=0.1")
    want = h(ha1 + b":n:00000001:c:auth-int:" + ha2)
    got = dver.d_ver([b"digest;q=0.1"], b"MD5-sess", b"u", b"r", b"p", b"n", b"REGISTER",
                     b"sip:x", b"auth-int", b"c", b"00000001", b"body")
    assert got == want


def test_refuses_what_it_cannot_compute():
    e = raises(dver.DigestError, dver.request_digest, b"SHA-512", b"u", b"r", b"p", b"n", b"M", b"u")
    assert str(e) == "unsupported digest algorithm sha-512"
    e = raises(dver.DigestError, dver.request_digest, b"MD5", b"u", b"r", b"p", b"n", b"M", b"u", b"auth")
    assert str(e) == "qop needs cnonce and nc"
    e = raises(dver.DigestError, dver.request_digest, b"MD5", b"u", b"r", b"p", b"n", b"M", b"u", b"x")
    assert str(e) == "unsupported qop x"
