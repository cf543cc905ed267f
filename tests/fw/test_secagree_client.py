# The RFC 3329 client state machine (2.3.1, 2.3.2, 2.4, 2.5, 5; DESIGN.md 4 rules 1-9).
from util import raises
from secagree_util import lines_of, hdrs_of, SeqRand

from sipling.secagree import client as C
from sipling.secagree.client import SecAgreeClient, offer_headers
from sipling.secagree.policy import Policy

KAM = "secagree/kamailio_example_cfg.txt"
OIMS = "secagree/openimscore_pcscf.txt"
CHALLENGE = (b"WWW-Authenticate", b'Digest realm="example.test", nonce="abc", qop="auth", algorithm=MD5')


def pol(**kw):
    d = dict(mechanisms=("ipsec-3gpp", "ipsec-man", "digest"),
             ipsec_algs=(("hmac-sha-1-96", "null"), ("hmac-sha-1-96", "aes-cbc")),
             ipsec_man=True, digest=True, port_c=5062, port_s=5064, port_c_span=8,
             max_retries=3, backoff_ms=1000, backoff_max_ms=3000)
    d.update(kw)
    return Policy(**d)


def kinds(ev):
    return [k for k, _ in ev]


def data(ev, kind):
    for k, d in ev:
        if k == kind:
            return d
    raise AssertionError("no %s event in %r" % (kind, ev))


def agreed_client(path=KAM, extra=(), status=494, **kw):
    c = SecAgreeClient(pol(**kw), SeqRand())
    c.start(0)
    ev = c.on_response(status, hdrs_of(path) + list(extra), 100)
    return c, ev


def test_offer_headers_exact():
    local = {"spi_c": 4294967295, "spi_s": 256, "port_c": 5066, "port_s": 5064}
    h = offer_headers(pol(), local)
    assert h == [
        (b"Security-Client", b"ipsec-3gpp;prot=esp;mod=trans;spi-c=4294967295;spi-s=256;port-c=5066;port-s=5064;alg=hmac-sha-1-96;ealg=null"),
        (b"Security-Client", b"ipsec-3gpp;prot=esp;mod=trans;spi-c=4294967295;spi-s=256;port-c=5066;port-s=5064;alg=hmac-sha-1-96;ealg=aes-cbc"),
        (b"Security-Client", b"ipsec-man"),
        (b"Security-Client", b"digest"),
        (b"Require", b"sec-agree"),
        (b"Proxy-Require", b"sec-agree"),
        (b"Supported", b"sec-agree"),
    ]
    # tls only when a TLS transport is declared; never a q on the client's list
    h = offer_headers(pol(tls=True, mechanisms=("tls", "digest")), local)
    assert [v for n, v in h if n == b"Security-Client"] == [b"tls", b"digest"]
    assert all(b"q=" not in v for n, v in h)


def test_start_draws_fresh_spis_and_port_c():
    c = SecAgreeClient(pol(), SeqRand())
    assert kinds(c.start(0)) == ["offer", "log"]
    a = c.local
    assert 256 <= a["spi_c"] <= 0xFFFFFFFF and a["spi_c"] != a["spi_s"]
    assert 5062 <= a["port_c"] < 5070 and a["port_c"] != 5064 and a["port_s"] == 5064
    h = c.request_headers()
    assert (b"Require", b"sec-agree") in h and (b"Proxy-Require", b"sec-agree") in h
    assert (b"Supported", b"sec-agree") in h


def test_494_kamailio_list_agrees_and_echoes_byte_for_byte():
    c, ev = agreed_client(extra=[CHALLENGE])
    ag = data(ev, "agreed")
    assert ag.mechanism == b"digest" and ag.status == 494
    assert c.state == C.AGREED and c.protected()
    want = lines_of(KAM)
    h = c.request_headers()
    assert [v for n, v in h if n == b"Security-Verify"] == want
    assert h[-3:] == [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree"),
                      (b"Supported", b"sec-agree")]
    logs = [d for k, d in ev if k == "log"]
    assert logs[-1] == "sec-agree: agreed digest d-alg=- d-qop=- (q=0.200, from 494)"
    assert logs[0].startswith("sec-agree: refused ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=null")
    assert logs[0].endswith(": lower q than 0.200")


def test_echo_keeps_case_spacing_order_and_line_split():
    odd = [b"IPsec-3GPP ;Q=0.3; alg=hmac-sha-1-96 ;ealg=null;spi-s=1009;spi-c=1008;port-s=7;port-c=6",
           b"digest;q=0.2 ,  ipsec-man;q=0.25;x=\"a, b\""]
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(494, [(b"security-server", odd[0]), (b"SECURITY-SERVER", odd[1]), CHALLENGE], 5)
    ag = data(ev, "agreed")
    assert ag.mechanism == b"ipsec-3gpp"
    assert (ag.peer["spi_c"], ag.peer["spi_s"], ag.peer["port_c"], ag.peer["port_s"]) == (1008, 1009, 6, 7)
    assert [v for n, v in c.request_headers() if n == b"Security-Verify"] == odd


def test_ipsec_agreement_gives_the_four_sas():
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    ag = data(ev, "agreed")
    assert ag.mechanism == b"ipsec-3gpp" and ag.status == 401
    assert (ag.alg, ag.ealg) == (b"hmac-sha-1-96", b"aes-cbc")
    u = c.local
    assert ag.sas() == [
        (1, "out", u["port_c"], 5101, 3000000001),
        (2, "in", 5100, 5064, u["spi_s"]),
        (3, "in", 5101, u["port_c"], u["spi_c"]),
        (4, "out", 5064, 5100, 4294967295),
    ]
    assert ag.inbound_ports() == (u["port_c"], 5064)
    # the OpenIMSCore "; " spacing comes back exactly
    assert [v for n, v in c.request_headers() if n == b"Security-Verify"] == [
        b"ipsec-3gpp; ealg=aes-cbc; alg=hmac-sha-1-96; spi-c=4294967295; spi-s=3000000001; port-c=5100; port-s=5101; q=0.1"]


def test_421_with_require_sec_agree_is_server_initiated():
    c, ev = agreed_client(status=421, extra=[(b"Require", b"path, sec-agree"), CHALLENGE])
    assert data(ev, "agreed").status == 421
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(421, hdrs_of(KAM) + [(b"Require", b"100rel"), CHALLENGE], 50)
    assert kinds(ev) == ["log", "abort", "log"]
    assert data(ev, "abort") == "421 without Require: sec-agree"
    assert c.state == C.BACKOFF


def test_401_without_security_server_to_offer_aborts():
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(401, [CHALLENGE], 10)
    assert data(ev, "abort") == "401 to the offer"
    c.reset()
    c.start(0)
    ev = c.on_response(494, [CHALLENGE], 10)
    assert data(ev, "abort") == "494 without Security-Server"


def test_2xx_to_offer_is_never_accepted_unprotected():
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(200, [], 10)
    assert data(ev, "abort").startswith("200 without security agreement")
    raises(RuntimeError, c.request_headers)
    assert not c.protected()


def test_missing_challenge_aborts_then_backoff_at_literal_times():
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    assert c.on_response(100, [], 1) == []
    ev = c.on_response(494, hdrs_of(KAM), 1000)
    assert data(ev, "abort") == ("chosen digest but the response has no Digest challenge "
                                 "(RFC 3329 2.3.1: agreement aborted)")
    assert c.state == C.BACKOFF and c.get_timer() == 2000
    raises(RuntimeError, c.request_headers)   # aborted: never continued
    assert c.handle_timer(1999) == []
    first = dict(c.local)
    ev = c.handle_timer(2000)
    assert kinds(ev) == ["offer", "log"] and c.state == C.OFFERED
    assert c.local["spi_c"] != first["spi_c"] and c.local["spi_s"] != first["spi_s"]
    assert c.local["port_c"] != first["port_c"]
    # second abort: 2000 ms, third: 3000 (capped), fourth: give up (max_retries=3)
    c.on_response(494, hdrs_of(KAM), 2100)
    assert c.get_timer() == 4100
    c.handle_timer(4100)
    c.on_response(494, hdrs_of(KAM), 5000)
    assert c.get_timer() == 8000
    c.handle_timer(8000)
    ev = c.on_response(494, hdrs_of(KAM), 9000)
    assert kinds(ev)[-1] == "failed" and c.state == C.FAILED and c.get_timer() is None
    raises(RuntimeError, c.request_headers)


def test_only_a_confirmed_agreement_resets_the_retry_budget():
    c = SecAgreeClient(pol(max_retries=1), SeqRand())
    c.start(0)
    c.on_response(494, hdrs_of(KAM), 10)          # abort: attempt 1
    c.handle_timer(1010)
    ev = c.on_response(494, hdrs_of(KAM) + [CHALLENGE], 1100)
    assert "agreed" in kinds(ev)
    # agreeing is not enough: a tamper now spends the budget (no endless agree/tamper loop)
    ev = c.on_response(494, hdrs_of(KAM), 1200, protected=True)
    assert kinds(ev)[-1] == "failed" and c.state == C.FAILED
    c.reset()
    c.start(0)
    c.on_response(494, hdrs_of(KAM), 10)
    c.handle_timer(1010)
    c.on_response(494, hdrs_of(KAM) + [CHALLENGE], 1100)
    assert c.on_response(200, [], 1150, protected=True) == []   # confirmed
    ev = c.on_response(494, hdrs_of(KAM), 1200, protected=True)
    assert "offer" in kinds(ev)   # one tamper allowed again: the budget was restored


def test_endless_tamper_is_bounded():
    c = SecAgreeClient(pol(max_retries=3), SeqRand())
    c.start(0)
    n = 0
    while c.state != C.FAILED:
        ev = c.on_response(494, hdrs_of(KAM) + [CHALLENGE], n, protected=False)
        assert "agreed" in kinds(ev)
        c.on_response(494, hdrs_of(KAM), n + 1, protected=True)
        n += 10
        assert n < 100
    assert n == 40


def test_494_to_protected_request_is_tampering():
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    old = data(ev, "agreed")
    ev = c.on_response(494, hdrs_of(OIMS), 500)
    assert kinds(ev) == ["alarm", "tamper", "drop", "offer", "log"]
    assert data(ev, "alarm") == "sec-agree: 494 to a protected request: Security-Server list was tampered with"
    assert data(ev, "drop") is old and c.agreement is None
    assert c.state == C.OFFERED
    assert c.local["spi_c"] != old.local["spi_c"] and c.local["spi_s"] != old.local["spi_s"]
    assert c.local["port_c"] != old.local["port_c"] and c.local["port_s"] == 5064
    assert any(n == b"Security-Client" for n, v in c.request_headers())
    # a 494 to an unprotected offer is just the ordinary challenge
    ev = c.on_response(494, hdrs_of(OIMS), 600, protected=False)
    assert "agreed" in kinds(ev)


def test_refresh_renegotiates_fresh_spis_and_port_c_keeps_port_s():
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    old = data(ev, "agreed")
    c.binding(600, 1000)
    assert c.get_timer() == 601000
    c.refresh(300000)
    assert c.state == C.REFRESHING and c.protected()
    h = c.request_headers()
    sc = [v for n, v in h if n == b"Security-Client"]
    sv = [v for n, v in h if n == b"Security-Verify"]
    assert len(sc) == 4 and sv == old.server_lines   # the client list is static (2.1)
    assert ("spi-c=%d;" % old.local["spi_c"]).encode() not in sc[0]
    assert c.local["port_s"] == old.local["port_s"] and c.local["port_c"] != old.local["port_c"]
    new = [b"ipsec-3gpp;q=0.1;prot=esp;mod=trans;spi-c=1077;spi-s=1078;port-c=5100;port-s=5101;alg=hmac-sha-1-96;ealg=null"]
    ev = c.on_response(401, [(b"Security-Server", new[0]), CHALLENGE], 300100)
    assert kinds(ev)[0] == "drop" and data(ev, "drop") is old
    ag = data(ev, "agreed")
    assert ag.local == c.local and ag.peer["spi_c"] == 1077 and ag.sas()[0][2] == c.local["port_c"]
    assert [v for n, v in c.request_headers() if n == b"Security-Verify"] == new
    assert "on refresh" in [d for k, d in ev if k == "log"][-1]


def test_refresh_answered_without_new_list_keeps_association():
    c, ev = agreed_client(extra=[CHALLENGE])
    c.refresh(10)
    ev = c.on_response(200, [], 20)
    assert kinds(ev) == ["log"] and c.state == C.AGREED
    assert data(ev, "log") == "sec-agree: refresh kept digest"


def test_digest_rechallenge_under_agreement():
    c, ev = agreed_client(extra=[CHALLENGE])
    assert c.on_response(401, [CHALLENGE], 500) == [("rechallenge", None)]
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    assert c.on_response(401, [CHALLENGE], 500) == []


def test_binding_expiry_drops_association():
    c, ev = agreed_client(extra=[CHALLENGE])
    ag = data(ev, "agreed")
    c.binding(60, 1000)
    assert c.handle_timer(60999) == []
    ev = c.handle_timer(61000)
    assert kinds(ev) == ["drop", "log", "expired"] and data(ev, "drop") is ag
    assert c.state == C.IDLE and c.get_timer() is None
    raises(RuntimeError, c.request_headers)


def test_digest_applies_d_alg_d_qop_and_dver_goes_into_verify():
    lines = [b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=null;spi-c=1;spi-s=2;port-c=3;port-s=4",
             b"digest;q=0.2;d-alg=MD5;d-qop=auth  , ipsec-man;q=0.05"]
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(494, [(b"Security-Server", v) for v in lines] + [CHALLENGE], 10)
    ag = data(ev, "agreed")
    assert ag.challenge_overrides() == {"algorithm": b"MD5", "qop": b"auth"}
    dv = ag.d_ver(b"door", b"example.test", b"pw", b"abc", b"REGISTER", b"sip:example.test",
                  cnonce=b"c1", nc=b"00000001")
    assert len(dv) == 32
    v = [x for n, x in ag.verify_headers(dv) if n == b"Security-Verify"]
    assert v == [lines[0], b'digest;q=0.2;d-alg=MD5;d-qop=auth;d-ver="' + dv + b'"  , ipsec-man;q=0.05']
    # without d-ver the echo is exact
    assert [x for n, x in ag.verify_headers() if n == b"Security-Verify"] == lines


def test_message_object_with_header_lines_works_too():
    class Msg:
        def __init__(self, pairs):
            self.pairs = pairs

        def header_lines(self, name):
            return [v for n, v in self.pairs if n.lower() == name.lower()]

    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    pairs = [(n.decode(), v.decode()) for n, v in hdrs_of(KAM) + [CHALLENGE]]
    ev = c.on_response(494, Msg(pairs), 10)
    assert data(ev, "agreed").server_lines == lines_of(KAM)


def test_logs_name_the_choice_and_never_keys():
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    line = [d for k, d in ev if k == "log"][-1]
    assert line.startswith("sec-agree: agreed ipsec-3gpp alg=hmac-sha-1-96 ealg=aes-cbc ours spi-c=")
    assert "theirs spi-c=4294967295 spi-s=3000000001 port-c=5100 port-s=5101" in line


def test_what_counts_as_a_digest_challenge():
    lines = lines_of(KAM)
    for ch, ok in (((b"WWW-Authenticate", b'Digest\trealm="r", nonce="n"'), True),
                   ((b"Proxy-Authenticate", b'  DIGEST realm="r", nonce="n"'), True),
                   ((b"WWW-Authenticate", b'Basic realm="r"'), False),
                   ((b"WWW-Authenticate", b'Digestx realm="r"'), False),
                   ((b"WWW-Authenticate", b"Digest"), False),
                   ((b"Authentication-Info", b'Digest realm="r"'), False)):
        c = SecAgreeClient(pol(), SeqRand())
        c.start(0)
        ev = c.on_response(494, [(b"Security-Server", v) for v in lines] + [ch], 10)
        assert ("agreed" in kinds(ev)) == ok, ch


def test_agreement_installs_into_the_esp_sadb():
    from sipling.esp.sa import SADB
    c, ev = agreed_client(OIMS, status=401, extra=[CHALLENGE])
    ag = data(ev, "agreed")
    db = SADB(SeqRand(7))
    pair = db.install_3gpp(ik=bytes(range(16)), ck=bytes(range(16, 32)), **ag.sa_args())
    got = [(sa.spi, sa.sport, sa.dport) for sa in pair.all()]
    assert got == [(spi, sp, dp) for _, _, sp, dp, spi in ag.sas()]
    assert db.lookup(c.local["spi_s"]) is pair.in_s and db.lookup(c.local["spi_c"]) is pair.in_c
    raises(ValueError, agreed_client(extra=[CHALLENGE])[0].agreement.sa_args)


def test_echo_is_byte_exact_for_generated_lists():
    from test_secagree_mech import _rng, _random_list, _render
    r = _rng(7)
    n = 0
    for _ in range(80):
        ml = [(b"digest", [(b"q", b"1")])] + _random_list(r)
        for style in (0, 3, 4, 5):
            lines = _render(ml, r, style)
            c = SecAgreeClient(pol(), SeqRand())
            c.start(0)
            ev = c.on_response(494, [(b"Security-Server", v) for v in lines] + [CHALLENGE], 1)
            if "agreed" not in kinds(ev):
                continue   # e.g. a generated ipsec-3gpp line without SPIs won the choice
            n += 1
            assert [v for k, v in c.request_headers() if k == b"Security-Verify"] == lines
    assert n > 200


def test_binding_expiry_during_backoff_keeps_the_retry():
    c, ev = agreed_client(extra=[CHALLENGE])
    c.binding(1, 0)                                          # binding ends at 1000
    assert "tamper" in kinds(c.on_response(494, hdrs_of(KAM), 100, protected=True))
    c.on_response(494, hdrs_of(KAM), 200)                    # no challenge: abort, attempt 2
    assert c.state == C.BACKOFF and c.get_timer() == 1000
    assert c.handle_timer(1000) == []                        # nothing left to drop
    assert c.state == C.BACKOFF and c.get_timer() == 2200    # the retry survives, no stale timer
    assert kinds(c.handle_timer(2200)) == ["offer", "log"] and c.get_timer() is None


def test_non_utf8_item_in_security_server_is_logged_escaped():
    # an unknown item with bytes that are not UTF-8 is refused and logged, never raised
    lines = [b'digest;q=0.2;d-alg=md5;d-qop=auth, foo;q=0.1;x="\xff\xfe"']
    c = SecAgreeClient(pol(), SeqRand())
    c.start(0)
    ev = c.on_response(494, [(b"Security-Server", lines[0]), CHALLENGE], 5)
    assert data(ev, "agreed").mechanism == b"digest"
    logs = [d for k, d in ev if k == "log"]
    assert [x for x in logs if x.startswith('sec-agree: refused foo;q=0.1;x="\\xff\\xfe": ')] != []


def test_server_spi_equal_to_ours_is_refused():
    # issue 10 finding 9: a Security-Server whose spi-s (or spi-c) is one of our own SPIs
    # would let our own packets, reflected back, pass ESP: no agreement from it
    for ours in ("spi_c", "spi_s"):
        c = SecAgreeClient(pol(), SeqRand())
        c.start(0)
        line = (b"ipsec-3gpp;q=0.1;prot=esp;mod=trans;spi-c=4000;spi-s=%d;port-c=5066;port-s=5068;"
                b"alg=hmac-sha-1-96;ealg=aes-cbc" % c.local[ours])
        ev = c.on_response(494, [(b"Security-Server", line)], 10)
        assert data(ev, "abort") == "Security-Server reuses one of our SPIs (reflection)", ours
        assert "agreed" not in kinds(ev) and not c.protected()
