# Digest authentication, client side: RFC known answers, challenge parsing, state machine.
from util import raises, vector

from sipling.sip import digest
from sipling.sip.digest import (AUTH_FAILED, AUTH_RETRY, AUTH_UNSUPPORTED, DigestAuth,
                                DigestError, authorization, choose, parse_challenges)


def _fields(relpath):
    """Header block as printed in the RFC -> list of (name, unfolded value)."""
    out = []
    for line in vector("digest/" + relpath).split(b"\n"):
        if not line.strip():
            continue
        if line[:1] in (b" ", b"\t"):
            name, val = out[-1]
            out[-1] = (name, val + b" " + line.strip())
        else:
            name, _, val = line.partition(b":")
            out.append((name, val.strip()))
    return out


def _params(cred_value):
    (scheme, p), = parse_challenges(cred_value)
    assert scheme == b"digest"
    return p


def _check(chal_file, auth_file, password, algorithm=None):
    chals = [v for n, v in _fields(chal_file)]
    want = _params(_fields(auth_file)[0][1])
    ch, = choose(chals, algorithm)
    got = authorization(ch, b"Mufasa", password, b"GET", want[b"uri"], b"",
                        int(want[b"nc"], 16), want[b"cnonce"])
    gp = _params(got)
    assert gp[b"response"] == want[b"response"], (gp[b"response"], want[b"response"])
    # every directive the RFC example sends, we send with the same value
    for k in want:
        if k == b"algorithm" and b"algorithm" not in ch:
            continue
        assert gp[k] == want[k], (k, gp[k], want[k])
    return gp


def test_rfc2617_3_5_mufasa():
    gp = _check("rfc2617_3.5_challenge.txt", "rfc2617_3.5_authorization.txt", b"Circle Of Life")
    assert gp[b"response"] == b"6629fae49393a05397450978507c4ef1"
    assert gp[b"algorithm"] == b"MD5"


def test_rfc2617_wrong_password_changes_response():
    chals = [v for n, v in _fields("rfc2617_3.5_challenge.txt")]
    ch, = choose(chals)
    got = _params(authorization(ch, b"Mufasa", b"Circle of Life", b"GET", b"/dir/index.html",
                                b"", 1, b"0a4f113b"))
    assert got[b"response"] != b"6629fae49393a05397450978507c4ef1"


def test_rfc7616_3_9_1_picks_sha256_and_matches():
    gp = _check("rfc7616_3.9.1_challenge.txt", "rfc7616_3.9.1_authorization_sha256.txt",
                b"Circle of Life")
    assert gp[b"algorithm"] == b"SHA-256"
    assert gp[b"response"] == b"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"


def test_rfc7616_3_9_1_md5_forced():
    gp = _check("rfc7616_3.9.1_challenge.txt", "rfc7616_3.9.1_authorization_md5.txt",
                b"Circle of Life", algorithm=b"MD5")
    assert gp[b"response"] == b"8ca523f5e9506fed4657c9700eebdbec"


def test_strongest_wins_regardless_of_order():
    md5 = b'Digest realm="r", nonce="n1", algorithm=MD5, qop="auth"'
    sha = b'Digest realm="r", nonce="n2", algorithm=SHA-256, qop="auth"'
    sess = b'Digest realm="r", nonce="n3", algorithm=MD5-sess, qop="auth"'
    assert choose([md5, sess, sha])[0][b"nonce"] == b"n2"
    assert choose([md5, sess])[0][b"nonce"] == b"n1"
    # unsupported algorithms and other schemes are skipped
    other = [b'Digest realm="r", nonce="x", algorithm=SHA-512-256', b'Basic realm="r"', md5]
    assert choose(other)[0][b"nonce"] == b"n1"
    assert choose([b'Digest realm="r", nonce="x", algorithm=SHA-512-256']) == []


def test_several_challenges_in_one_value_and_realms():
    v = b'Basic realm="b", Digest realm="a", nonce="1", Digest realm="c", nonce="2", stale=TRUE'
    cs = parse_challenges(v)
    assert [c[0] for c in cs] == [b"basic", b"digest", b"digest"]
    assert cs[2][1] == {b"realm": b"c", b"nonce": b"2", b"stale": b"TRUE"}
    got = choose([v])
    assert [c[b"realm"] for c in got] == [b"a", b"c"]


def test_parse_quoted_escapes_unknown_params_case():
    v = b'DIGEST Realm="a \\"q\\" \\\\ b",NONCE="x,y", foo=bar, Algorithm=sha-256 ,qop="auth-int"'
    (s, p), = parse_challenges(v)
    assert s == b"digest"
    assert p[b"realm"] == b'a "q" \\ b'
    assert p[b"nonce"] == b"x,y"
    assert p[b"foo"] == b"bar"
    assert digest.canonical_alg(p[b"algorithm"]) == b"SHA-256"
    # realm with quotes is re-escaped in the credentials
    out = authorization(p, b"u", b"p", b"REGISTER", b"sip:a", b"", 1, b"c")
    assert b'realm="a \\"q\\" \\\\ b"' in out
    assert _params(out)[b"realm"] == b'a "q" \\ b'


def test_parse_errors():
    raises(DigestError, parse_challenges, b'Digest realm="open')
    raises(DigestError, parse_challenges, b'Digest realm="a" nonce="b"')
    raises(DigestError, parse_challenges, b'realm="a"')
    raises(DigestError, parse_challenges, b'Digest realm="a", realm="b"')


def test_no_qop_rfc2069_compat():
    # RFC 2617 3.2.2.1: without qop, response = KD(H(A1), nonce ":" H(A2)); no cnonce/nc sent
    ch = {b"realm": b"testrealm@host.com", b"nonce": b"dcd98b7102dd2f0e8b11d0f600bfb0c093"}
    out = authorization(ch, b"Mufasa", b"Circle Of Life", b"GET", b"/dir/index.html")
    p = _params(out)
    assert b"cnonce" not in p and b"nc" not in p and b"qop" not in p
    h1 = digest.H(b"MD5", b"Mufasa:testrealm@host.com:Circle Of Life")
    h2 = digest.H(b"MD5", b"GET:/dir/index.html")
    assert p[b"response"] == digest.H(b"MD5", h1 + b":" + ch[b"nonce"] + b":" + h2)
    assert p[b"response"] != b"6629fae49393a05397450978507c4ef1"
    sess = {b"realm": b"r", b"nonce": b"n", b"algorithm": b"MD5-sess"}
    raises(DigestError, authorization, sess, b"u", b"p", b"GET", b"/")


def test_auth_int_hashes_body():
    ch = {b"realm": b"r", b"nonce": b"n", b"qop": b"auth-int"}
    a = _params(authorization(ch, b"u", b"p", b"MESSAGE", b"sip:x", b"hello", 1, b"c"))
    b = _params(authorization(ch, b"u", b"p", b"MESSAGE", b"sip:x", b"hellO", 1, b"c"))
    assert a[b"qop"] == b"auth-int"
    assert a[b"response"] != b[b"response"]
    # auth preferred when both offered, auth-int when forced (RFC 3329 d-qop)
    ch2 = {b"realm": b"r", b"nonce": b"n", b"qop": b"auth-int, auth"}
    assert _params(authorization(ch2, b"u", b"p", b"M", b"u", b"", 1, b"c"))[b"qop"] == b"auth"
    f = authorization(ch2, b"u", b"p", b"M", b"u", b"", 1, b"c", qop=b"auth-int")
    assert _params(f)[b"qop"] == b"auth-int"
    raises(DigestError, authorization, {b"realm": b"r", b"nonce": b"n", b"qop": b"bogus"},
           b"u", b"p", b"M", b"u", b"", 1, b"c")


def test_kd_and_response_digest_helpers():
    # KD(secret, data) = H(secret ":" data), RFC 2617 3.2.1, used by sec-agree for d-ver
    assert digest.KD(b"MD5", b"s", b"d") == digest.H(b"MD5", b"s:d")
    assert len(digest.H(b"SHA-256", b"")) == 64
    assert digest.H(b"MD5", b"") == b"d41d8cd98f00b204e9800998ecf8427e"
    h1 = digest.ha1(b"MD5", b"Mufasa", b"testrealm@host.com", b"Circle Of Life")
    h2 = digest.ha2(b"MD5", b"GET", b"/dir/index.html")
    r = digest.response_digest(b"MD5", h1, b"dcd98b7102dd2f0e8b11d0f600bfb0c093",
                               b"00000001", b"0a4f113b", b"auth", h2)
    assert r == b"6629fae49393a05397450978507c4ef1"
    assert digest.nc_value(255) == b"000000ff"


class _Rand:
    def __init__(self):
        self.n = 0

    def __call__(self, k):
        self.n += 1
        return bytes([self.n]) * k


def _chal(nonce, stale=False, realm=b"sip.test", alg=b"MD5"):
    v = b'Digest realm="%s", nonce="%s", algorithm=%s, qop="auth", opaque="op"' % (realm, nonce, alg)
    if stale:
        v += b", stale=true"
    return v


def test_state_nc_counts_and_cnonce_from_rand():
    a = DigestAuth(b"alice", b"secret", _Rand())
    assert a.on_challenge(401, [_chal(b"n1")]) == AUTH_RETRY
    (name, v1), = a.credentials(b"REGISTER", b"sip:sip.test")
    (_, v2), = a.credentials(b"REGISTER", b"sip:sip.test")
    p1, p2 = _params(v1), _params(v2)
    assert name == b"Authorization"
    assert p1[b"nc"] == b"00000001" and p2[b"nc"] == b"00000002"
    assert p1[b"cnonce"] == b"0101010101010101"
    assert p1[b"opaque"] == b"op"
    assert b"secret" not in v1


def test_state_wrong_password_gives_up():
    a = DigestAuth(b"alice", b"wrong", _Rand())
    assert a.on_challenge(401, [_chal(b"n1")]) == AUTH_RETRY
    a.credentials(b"REGISTER", b"sip:sip.test")
    # a fresh nonce without stale=true: one more try (an expired nonce some servers do not
    # flag), then a second rejection in a row is final (RFC 2617 3.2.1)
    assert a.on_challenge(401, [_chal(b"n2")]) == AUTH_RETRY
    (_, v), = a.credentials(b"REGISTER", b"sip:sip.test")
    assert _params(v)[b"nonce"] == b"n2" and _params(v)[b"nc"] == b"00000001"
    assert a.on_challenge(401, [_chal(b"n3")]) == AUTH_FAILED
    assert "rejected the credentials of alice twice" in a.reason
    assert "wrong" not in a.reason  # the password never appears
    b = DigestAuth(b"bob", b"pw", _Rand())
    b.on_challenge(401, [_chal(b"n1")])
    b.credentials(b"REGISTER", b"sip:sip.test")
    assert b.on_challenge(401, [_chal(b"n1", stale=True)]) == AUTH_FAILED
    assert "rejected the credentials of bob (same nonce" in b.reason


def test_state_stale_retries_with_new_nonce():
    a = DigestAuth(b"alice", b"pw", _Rand())
    a.on_challenge(401, [_chal(b"n1")])
    a.credentials(b"REGISTER", b"sip:sip.test")
    assert a.on_challenge(401, [_chal(b"n2", stale=True)]) == AUTH_RETRY
    (_, v), = a.credentials(b"REGISTER", b"sip:sip.test")
    p = _params(v)
    assert p[b"nonce"] == b"n2" and p[b"nc"] == b"00000001"
    # stale loops are bounded
    r = AUTH_RETRY
    i = 3
    while r == AUTH_RETRY and i < 20:
        r = a.on_challenge(401, [_chal(b"n%d" % i, stale=True)])
        a.credentials(b"REGISTER", b"sip:sip.test")
        i += 1
    assert r == AUTH_FAILED and i == 6


def test_state_407_and_401_both_answered():
    a = DigestAuth(b"alice", b"pw", _Rand())
    assert a.on_challenge(407, [_chal(b"p1", realm=b"proxy")]) == AUTH_RETRY
    assert a.on_challenge(401, [_chal(b"r1", realm=b"reg", alg=b"SHA-256")]) == AUTH_RETRY
    hs = a.credentials(b"INVITE", b"sip:bob@reg")
    names = sorted(h[0] for h in hs)
    assert names == [b"Authorization", b"Proxy-Authorization"]
    for name, v in hs:
        p = _params(v)
        if name == b"Proxy-Authorization":
            assert p[b"realm"] == b"proxy" and p[b"algorithm"] == b"MD5"
        else:
            assert p[b"realm"] == b"reg" and p[b"algorithm"] == b"SHA-256"
            assert len(p[b"response"]) == 64


def test_state_after_success_new_challenge_is_fresh():
    a = DigestAuth(b"alice", b"pw", _Rand())
    a.on_challenge(401, [_chal(b"n1")])
    a.credentials(b"REGISTER", b"sip:sip.test")
    a.on_success()
    assert a.on_challenge(401, [_chal(b"n2")]) == AUTH_RETRY


def test_state_unsupported_and_forced_algorithm():
    a = DigestAuth(b"alice", b"pw", _Rand())
    assert a.on_challenge(401, [b'Basic realm="x"']) == AUTH_UNSUPPORTED
    assert a.on_challenge(401, [_chal(b"n", alg=b"SHA-512-256")]) == AUTH_UNSUPPORTED
    assert a.on_challenge(401, [b'Digest realm="x", nonce="unterminated']) == AUTH_UNSUPPORTED
    assert "malformed" in a.reason
    raises(DigestError, a.on_challenge, 403, [_chal(b"n")])
    # sec-agree d-alg=MD5 forces MD5 even when SHA-256 is offered first
    f = DigestAuth(b"alice", b"pw", _Rand(), algorithm=b"MD5", qop=b"auth-int")
    assert f.on_challenge(401, [_chal(b"s", alg=b"SHA-256"), _chal(b"m")]) == AUTH_RETRY
    (_, v), = f.credentials(b"REGISTER", b"sip:sip.test", b"body")
    p = _params(v)
    assert p[b"algorithm"] == b"MD5" and p[b"nonce"] == b"m" and p[b"qop"] == b"auth-int"


def _register():
    from sipling.sip import message
    return message.request(b"REGISTER", b"sip:sip.test", [
        (b"Via", b"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKr1"), (b"Max-Forwards", b"70"),
        (b"From", b"<sip:alice@sip.test>;tag=a1"), (b"To", b"<sip:alice@sip.test>"),
        (b"Call-ID", b"reg-1"), (b"CSeq", b"1 REGISTER")])


def test_with_parsed_messages_401_then_407():
    from sipling.sip import message
    from sipling.sip.parser import parse
    reg = _register()
    r401 = message.response(reg, 401, b"Unauthorized", [
        (b"WWW-Authenticate", b'Digest realm="sip.test", nonce="abc,def", qop="auth", algorithm=MD5'),
        (b"WWW-Authenticate", b'Digest realm="sip.test", nonce="s2", qop="auth", algorithm=SHA-256')])
    r401 = parse(r401.serialize())
    a = DigestAuth(b"alice", b"pw", _Rand())
    assert a.on_response(r401) == AUTH_RETRY
    a.apply(reg)
    again = parse(reg.serialize())
    (v,) = again.get_all(b"Authorization")
    p = _params(v)
    assert p[b"nonce"] == b"s2" and p[b"algorithm"] == b"SHA-256" and p[b"uri"] == b"sip:sip.test"
    h1 = digest.ha1(b"SHA-256", b"alice", b"sip.test", b"pw")
    h2 = digest.ha2(b"SHA-256", b"REGISTER", b"sip:sip.test")
    assert p[b"response"] == digest.response_digest(b"SHA-256", h1, b"s2", b"00000001",
                                                    p[b"cnonce"], b"auth", h2)
    r407 = parse(message.response(reg, 407, b"Proxy Authentication Required", [
        (b"Proxy-Authenticate", b'Digest realm="edge", nonce="p1"')]).serialize())
    assert a.on_response(r407) == AUTH_RETRY
    a.apply(reg)
    again = parse(reg.serialize())
    assert len(again.get_all(b"Authorization")) == 1       # replaced, not piled up
    assert _params(again.get_all(b"Authorization")[0])[b"nc"] == b"00000002"
    pp = _params(again.get_all(b"Proxy-Authorization")[0])
    assert pp[b"realm"] == b"edge" and b"qop" not in pp
    raises(DigestError, a.on_response, parse(message.response(reg, 403, b"No").serialize()))


def test_unparsable_other_field_does_not_hide_digest():
    neg = b"Negotiate YIIabc=="
    dig = _chal(b"n9")
    assert choose([neg, dig])[0][b"nonce"] == b"n9"
    raises(DigestError, choose, [neg])
    a = DigestAuth(b"alice", b"pw", _Rand())
    assert a.on_challenge(401, [neg, dig]) == AUTH_RETRY


def test_challenges_we_cannot_answer_are_unsupported():
    a = DigestAuth(b"alice", b"pw", _Rand())
    r = a.on_challenge(401, [b'Digest realm="r", nonce="n", qop="auth-conf"'])
    assert r == AUTH_UNSUPPORTED and "auth-conf" in a.reason
    r = a.on_challenge(401, [b'Digest realm="r", nonce="n", algorithm=MD5-sess'])
    assert r == AUTH_UNSUPPORTED and "MD5-sess without qop" in a.reason


def test_stale_resets_the_no_stale_retry():
    a = DigestAuth(b"alice", b"pw", _Rand())
    a.on_challenge(401, [_chal(b"n1")])
    a.credentials(b"REGISTER", b"sip:sip.test")
    assert a.on_challenge(401, [_chal(b"n2")]) == AUTH_RETRY          # expired, not flagged
    a.credentials(b"REGISTER", b"sip:sip.test")
    assert a.on_challenge(401, [_chal(b"n3", stale=True)]) == AUTH_RETRY
    a.credentials(b"REGISTER", b"sip:sip.test")
    # stale=true says the digest was right: the next unflagged rejection gets its one retry
    assert a.on_challenge(401, [_chal(b"n4")]) == AUTH_RETRY
    a.credentials(b"REGISTER", b"sip:sip.test")
    assert a.on_challenge(401, [_chal(b"n5")]) == AUTH_FAILED         # second non-stale in a row
    b = DigestAuth(b"bob", b"pw", _Rand())
    b.on_challenge(401, [_chal(b"n1")])
    b.credentials(b"REGISTER", b"sip:sip.test")
    assert b.on_challenge(401, [_chal(b"n2")]) == AUTH_RETRY
    b.credentials(b"REGISTER", b"sip:sip.test")
    b.on_success()                                                    # the retry worked
    assert b.on_challenge(401, [_chal(b"n3")]) == AUTH_RETRY
