# The device UA and app (firmware/sipling/sip/ua.py, uac.py, app.py) against a scripted
# sec-agree registrar, at literal times. Same file on CPython and MicroPython.
from sipling import config, log
from sipling.app import App
from sipling.sip import message, parser
from sipling.sip import ua as U
from sipling.sip import uac
from util import poll_until

PROXY = ("127.0.0.1", 5060)
SERVER = b"digest;q=0.2;d-alg=md5;d-qop=auth"
CHALLENGE = b'Digest realm="example.test", nonce="n0nce1", qop="auth", algorithm=MD5'


class SimBoard:
    def __init__(self):
        self.name = "sim"
        self.caps = {"relay": {"kind": "actuator"}, "button": {"kind": "button"},
                     "temperature": {"kind": "sensor", "threshold": 30}}
        self.values = {"relay": False, "button": False, "temperature": 21.5}
        self.pending = []
        self.writes = 0

    def read(self, n):
        return self.values[n]

    def write(self, n, on):
        self.writes += 1
        self.values[n] = on

    def poll(self, now):
        out = self.pending
        self.pending = []
        return out


def make_rand():
    st = [0]

    def rand(n):
        st[0] += 1
        return bytes([(st[0] * 31 + i * 7) & 255 for i in range(n)])
    return rand


def make_app(keepalive_ms=30000, owners=("sip:alice@example.test",), digest_commands=True, trust_from=False):
    # a digest-only board: the scripted registrar speaks digest, so both opt-ins of
    # issue 10 (require_ipsec false; commands under digest) are set unless a test says not
    cfg, problems = config.validate({
        "version": 1, "board": "sim",
        "identity": {"aor": "sip:door@example.test", "password": "s3cret"},
        "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
        "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
        "secagree": {"mechanisms": ["digest"], "require_ipsec": False},
        "control": {"digest_commands": digest_commands, "trust_from": trust_from},
        "owners": list(owners)})
    assert problems == []
    board = SimBoard()
    return App(cfg, board, make_rand(), keepalive_ms=keepalive_ms), board


def sent(app):
    return [(parser.parse(d), dst) for d, dst in app.datagrams_to_send()]


def answer(app, req, status, reason, hdrs=(), now=0):
    r = message.response(req, status, reason, hdrs, to_tag="srv1")
    app.receive(r.serialize(), PROXY, True, now)


def register(app, now=0):
    app.start(now)
    [(r1, dst)] = sent(app)
    assert dst == PROXY
    answer(app, r1, 494, "Security Agreement Required",
           [("Security-Server", SERVER), ("WWW-Authenticate", CHALLENGE)], now)
    [(r2, _)] = sent(app)
    answer(app, r2, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=300")], now)
    assert app.ua.state == U.REGISTERED
    return r1, r2


def incoming(method, frm, body=b"", cseq=1, branch="z9hG4bKin1", ctype="text/plain", extra=(), pai=True):
    # pai: the identity the proxy asserted for the sender (RFC 3325), as the edge passes it
    h = [("Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=" + branch),
         ("Via", "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bKorig"),
         ("From", "<%s>;tag=f1" % frm), ("To", "<sip:door@example.test>"),
         ("Call-ID", "call-" + branch), ("CSeq", "%d %s" % (cseq, method))]
    if pai:
        h.append(("P-Asserted-Identity", "<%s>" % frm))
    if body:
        h.append(("Content-Type", ctype))
    h.extend(extra)
    return message.request(method, "sip:door@127.0.0.1:5064", h, body).serialize()


def test_register_offer_then_verify_with_dver_and_credentials():
    app, _ = make_app()
    r1, r2 = register(app)
    assert r1.method == b"REGISTER" and r1.uri == b"sip:example.test"
    assert r1.get("Security-Client") == b"digest"
    assert r1.get("Require") == b"sec-agree" and r1.get("Proxy-Require") == b"sec-agree"
    assert r1.get("Security-Verify") is None and r1.get("Authorization") is None
    sv = r2.get("Security-Verify")
    assert sv.startswith(SERVER + b';d-ver="') and len(sv) == len(SERVER) + 41
    assert b'nonce="n0nce1"' in r2.get("Authorization")
    assert r2.call_id() == r1.call_id() and r2.cseq()[0] == r1.cseq()[0] + 1
    assert app.ua.status() == "registered via digest"


def test_refresh_at_80_percent_and_keepalive_timer():
    app, _ = make_app(keepalive_ms=30000)
    register(app, now=1000)
    # expires=300 granted: refresh at 1000 + 300000 - 60000
    assert app.ua.t_refresh == 241000
    assert app.get_timer() == 6000  # Timer K of the REGISTER transaction (T4, 17.1.2.2)
    app.handle_timer(6000)
    assert sent(app) == [] and app.get_timer() == 31000  # then the keep-alive
    app.handle_timer(31000)
    [(ka, _)] = sent(app)
    assert ka.method == b"OPTIONS" and ka.get("Security-Verify") is not None
    answer(app, ka, 200, "OK", now=31010)
    assert app.ua.t_keepalive == 61010
    app.ua.keepalive_ms = 0
    app.ua.t_keepalive = None
    app.handle_timer(241000)
    [(rr, _)] = sent(app)
    assert rr.method == b"REGISTER" and rr.get("Security-Verify") is not None
    assert b"nc=00000003" in rr.get("Authorization")


def test_retransmission_timer_e_then_timeout_backoff_with_jitter():
    app, _ = make_app()
    app.start(0)
    assert len(sent(app)) == 1
    times = []
    t = 0
    while app.ua.state == U.REGISTERING:
        t = app.get_timer()
        app.handle_timer(t)
        if app.ua.state == U.REGISTERING:
            assert len(sent(app)) == 1
            times.append(t)
    # RFC 3261 17.1.2.2: T1=500 doubling to T2=4000, Timer F at 64*T1
    assert times == [500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
    assert t == 32000 and app.ua.state == U.BACKOFF
    d = app.ua.t_backoff - 32000
    assert 500 <= d <= 1000  # first backoff: 1 s with jitter d/2 + rand(d/2)
    app.handle_timer(app.ua.t_backoff)
    [(r, _)] = sent(app)
    assert r.get("Security-Client") == b"digest" and app.ua.state == U.REGISTERING


def test_backoff_is_bounded():
    app, _ = make_app()
    app.ua.failures = 40
    app.ua._fail(0, "test")
    assert 150000 <= app.ua.t_backoff <= 300000


def test_owner_message_200_without_body_then_reply_message():
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay on"), PROXY, True, 100)
    out = sent(app)
    assert len(out) == 2
    ok, dst = out[0]
    assert ok.status == 200 and ok.body == b"" and dst == PROXY
    assert ok.to_tag() is not None and len(ok.get_all("Via")) == 2
    rep = out[1][0]
    assert rep.method == b"MESSAGE" and rep.uri == b"sip:alice@example.test"
    assert rep.body == b"ok relay=on" and rep.get("Content-Type") == b"text/plain"
    assert rep.get("Security-Verify") is not None
    assert board.values["relay"] is True and board.writes == 1


def test_retransmitted_request_not_executed_twice():
    app, board = make_app()
    register(app)
    req = incoming("MESSAGE", "sip:alice@example.test", b"set relay on")
    app.receive(req, PROXY, True, 100)
    first = sent(app)[0][0].serialize()
    app.receive(req, PROXY, True, 600)
    again = app.datagrams_to_send()
    assert [d for d, _ in again] == [first]
    assert board.writes == 1 and app.ua.counters["retransmissions_absorbed"] == 1
    assert app.ua.counters["commands"] == 1


def test_stranger_gets_403_and_nothing_runs():
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:mallory@example.test", b"set relay on"), PROXY, True, 100)
    [(r, _)] = sent(app)
    assert r.status == 403 and board.writes == 0 and app.ua.counters["forbidden"] == 1


def test_pai_from_trusted_proxy_counts():
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:mallory@example.test", b"status", pai=False,
                         extra=[("P-Asserted-Identity", "<sip:alice@example.test>")]), PROXY, True, 100)
    out = sent(app)
    assert out[0][0].status == 200 and out[1][0].body.startswith(b"ok button=off relay=off")


def test_forged_from_without_asserted_identity_is_refused():
    # issue 10 finding 3: From is whatever the sender typed; without the edge's PAI nobody
    # is an owner, unless the lab switch control.trust_from says otherwise (and it is logged)
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay on", pai=False), PROXY, True, 100)
    [(r, _)] = sent(app)
    assert r.status == 403 and board.writes == 0 and app.ua.counters["forbidden"] == 1
    lines = []
    log.set_sink(lines.append)
    try:
        app, board = make_app(trust_from=True)
        register(app)
    finally:
        log.set_sink(None)
    assert any("control.trust_from is on" in ln for ln in lines)
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay on", pai=False), PROXY, True, 100)
    assert sent(app)[0][0].status == 200 and board.values["relay"] is True


def test_commands_under_digest_only_refused_without_the_opt_in():
    # issue 10 finding 1: RFC 3329 digest authenticates only the board's own requests; the
    # proxy's requests to it are anyone's who can use the proxy's address, so no command
    # runs under digest unless control.digest_commands is set, and the log says so
    lines = []
    log.set_sink(lines.append)
    try:
        app, board = make_app(digest_commands=False)
        register(app)
        app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay on"), PROXY, True, 100)
    finally:
        log.set_sink(None)
    [(r, _)] = sent(app)
    assert r.status == 403 and r.reason == b"Forbidden (commands need IPsec)"
    assert board.writes == 0 and app.ua.counters["refused_digest_only"] == 1
    assert any("commands are refused (IPsec needed)" in ln for ln in lines)
    assert any("refused under a digest-only agreement" in ln for ln in lines)


def test_unprotected_or_foreign_source_ignored():
    app, board = make_app()
    req = incoming("MESSAGE", "sip:alice@example.test", b"set relay on")
    app.receive(req, PROXY, True, 0)  # not registered yet
    assert sent(app) == []
    register(app)
    app.receive(req, ("127.0.0.1", 6666), False, 10)  # straight to our port, not via the proxy
    app.receive(req, PROXY, False, 10)                 # not through the agreed protection
    assert sent(app) == [] and board.writes == 0
    assert app.ua.counters["ignored_unprotected"] == 3


def test_options_answered_unknown_405_bad_400():
    app, _ = make_app()
    register(app)
    app.receive(incoming("OPTIONS", "sip:alice@example.test", branch="z9hG4bKo"), PROXY, True, 5)
    [(r, _)] = sent(app)
    assert r.status == 200 and r.get("Allow") == b"MESSAGE, OPTIONS"
    app.receive(incoming("INVITE", "sip:alice@example.test", branch="z9hG4bKi"), PROXY, True, 5)
    [(r, _)] = sent(app)
    assert r.status == 405 and r.get("Allow") == b"MESSAGE, OPTIONS"
    app.receive(b"MESSAGE sip:door@x SIP/2.0\r\nVia: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKb\r\n\r\n", PROXY, True, 5)
    out = app.datagrams_to_send()
    assert len(out) == 1 and out[0][0].startswith(b"SIP/2.0 400 ")


def test_keepalive_401_means_proxy_restarted_reregister():
    app, _ = make_app(keepalive_ms=1000)
    register(app)
    app.handle_timer(1000)
    [(ka, _)] = sent(app)
    answer(app, ka, 401, "Unauthorized", [("WWW-Authenticate", CHALLENGE.replace(b"n0nce1", b"n2"))], 1010)
    [(r, _)] = sent(app)
    assert app.ua.state == U.REGISTERING
    assert r.get("Security-Client") == b"digest" and r.get("Security-Verify") is None


def test_keepalive_goes_to_our_own_aor_and_a_lost_binding_reregisters():
    # issue 10 finding 7: the registrar, not the proxy, must answer the keep-alive: an
    # OPTIONS to our own AOR comes back to us by the binding; 404 means it is gone
    app, _ = make_app(keepalive_ms=30000)
    register(app, now=0)
    app.handle_timer(30000)
    [(ka, _)] = sent(app)
    assert ka.method == b"OPTIONS" and ka.uri == b"sip:door@example.test"
    assert ka.get("To") == b"<sip:door@example.test>"
    answer(app, ka, 404, "Not Found", now=30010)
    [(r, _)] = sent(app)
    assert app.ua.state == U.REGISTERING and r.method == b"REGISTER"


def test_unanswered_keepalive_gives_up_after_8_s():
    # a lost edge (unknown SPI, no answer at all): noticed 8 s after the keep-alive, not
    # after Timer F's 32 s, so within 38 s of the loss with the default 30 s interval
    app, _ = make_app(keepalive_ms=30000)
    register(app, now=0)
    app.handle_timer(30000)
    [(ka, _)] = sent(app)
    t = 30000
    while app.ua.state == U.REGISTERED:
        t = app.get_timer()
        assert t <= 38000, t
        app.handle_timer(t)
        sent(app)
    assert t == 38000 and app.ua.state == U.REGISTERING


def test_stop_deregisters_with_expires_zero():
    app, _ = make_app()
    register(app)
    app.stop(50)
    [(r, _)] = sent(app)
    assert r.get("Expires") == b"0" and b";expires=0" in r.get("Contact")
    assert r.get("Security-Verify") is not None
    answer(app, r, 200, "OK", now=60)
    assert app.stopped()


def test_button_event_goes_to_each_owner_with_retry():
    app, board = make_app(owners=("sip:alice@example.test", "sip:bob@example.test"))
    register(app)
    board.pending = [("button", "button", True), ("sensor", "temperature", 31.5)]
    app.handle_timer(100)
    out = sent(app)
    got = sorted((m.uri, m.body) for m, _ in out)
    assert got == [(b"sip:alice@example.test", b"event button pressed"),
                   (b"sip:alice@example.test", b"event temperature 31.5 above 30.0"),
                   (b"sip:bob@example.test", b"event button pressed"),
                   (b"sip:bob@example.test", b"event temperature 31.5 above 30.0")]
    for m, _ in out:
        answer(app, m, 480 if m.uri == b"sip:bob@example.test" else 200, "X", now=110)
    assert app.outbox.delivered == 2 and len(app.outbox.items) == 2
    assert app.get_timer() == 2110  # retry of bob's two after 2 s
    app.handle_timer(2110)
    again = sent(app)
    assert sorted(m.uri for m, _ in again) == [b"sip:bob@example.test"] * 2


def test_console_commands():
    app, board = make_app()
    assert app.console("status", 0).startswith("status: sip idle;")
    board.press = lambda n: board.pending.append(("button", n, True))
    assert app.console("press button", 0) == "ok pressed button"
    assert app.console("do set relay on", 0) == "ok relay=on"
    assert app.console("bogus", 0).startswith("error unknown console command")


IPSEC_SERVER = (b"ipsec-3gpp;q=0.9;prot=esp;mod=trans;spi-c=1111;spi-s=2222;port-c=5066;port-s=5068;"
                b"alg=hmac-sha-1-96;ealg=aes-cbc")


def test_ipsec_agreement_installs_sas_then_refresh_offers_fresh_spis():
    installed, dropped = [], []
    app = _ipsec_app(installed, dropped)
    app.start(0)
    [(r1, _)] = sent(app)
    sc = r1.get_all("Security-Client")
    assert len(sc) == 1 and sc[0].startswith(b"ipsec-3gpp;prot=esp;mod=trans;spi-c=")
    answer(app, r1, 494, "Security Agreement Required", [("Security-Server", IPSEC_SERVER)], 10)
    assert len(installed) == 1 and installed[0].mechanism == b"ipsec-3gpp"
    assert installed[0].peer == {"spi_c": 1111, "spi_s": 2222, "port_c": 5066, "port_s": 5068}
    [(r2, _)] = sent(app)
    assert r2.get("Security-Verify") == IPSEC_SERVER and r2.get("Authorization") is None
    # the Via sent-by and Contact carry our protected port-s (DESIGN.md 4)
    assert b"127.0.0.1:5064" in r2.get("Via") and b"127.0.0.1:5064" in r2.get("Contact")
    answer(app, r2, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=600")], 20)
    assert app.ua.status() == "registered via ipsec-3gpp"
    first = installed[0].local
    app.handle_timer(app.ua.t_refresh)
    [(r3, _)] = sent(app)
    assert r3.get("Security-Verify") == IPSEC_SERVER
    sc3 = r3.get("Security-Client")
    assert sc3 is not None and b"spi-c=%d;" % first["spi_c"] not in sc3  # fresh SPIs on refresh
    assert b"port-s=5064" in sc3
    answer(app, r3, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=600")], 480100)
    assert app.ua.registered() and dropped == []
    # a 494 to a protected request: tampering alarm, association dropped, start over later
    app.handle_timer(app.ua.t_refresh)
    [(r4, _)] = sent(app)
    answer(app, r4, 494, "Security Agreement Required", [("Security-Server", IPSEC_SERVER)], 960300)
    assert app.ua.state == U.BACKOFF and len(dropped) >= 1


def test_json_command_gets_json_reply():
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b'{"cmd": "set", "name": "relay", "value": "on"}',
                         ctype="application/json"), PROXY, True, 100)
    out = sent(app)
    assert out[0][0].status == 200 and out[0][0].body == b""
    rep = out[1][0]
    assert rep.get("Content-Type") == b"application/json"
    import json
    assert json.loads(rep.body) == {"ok": True, "relay": "on"}
    assert board.values["relay"] is True


def test_reply_message_failure_is_logged_not_retried():
    app, board = make_app()
    register(app)
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b"status"), PROXY, True, 100)
    out = sent(app)
    answer(app, out[1][0], 480, "Temporarily Unavailable", now=120)
    assert app.ua.in_flight() == 0 and app.ua.registered()
    app.handle_timer(60000)
    assert [m for m, _ in sent(app) if m.method == b"MESSAGE"] == []


def test_flood_of_commands_keeps_transactions_bounded():
    app, board = make_app()
    register(app)
    for i in range(40):
        app.receive(incoming("MESSAGE", "sip:alice@example.test", b"status", branch="z9hG4bKf%d" % i), PROXY, True, 100)
    out = sent(app)
    oks = [m for m, _ in out if m.status == 200]
    replies = [m for m, _ in out if m.method == b"MESSAGE"]
    assert len(oks) == 40 and len(replies) == U.MAX_TX
    assert app.ua.in_flight() == U.MAX_TX
    # the answered requests kept to absorb retransmissions are bounded too (Timer J)
    assert len([t for t in app.ua.layer.transactions() if t.server]) == uac.KEEP


def _md5(*parts):
    import hashlib
    import binascii
    return binascii.hexlify(hashlib.md5(b":".join(parts)).digest())


def _auth_fields(value):
    # Digest k=v, k="v" (as we send it; no commas inside our quoted values)
    assert value.startswith(b"Digest ")
    out = {}
    for part in value[7:].split(b","):
        k, _, v = part.strip().partition(b"=")
        out[k] = v.strip(b'"')
    return out


def _check_digest(req, password, nonce, nc):
    # RFC 2617 3.2.2.1 with qop=auth, MD5, computed here without sipling.sip.digest
    a = _auth_fields(req.get("Authorization"))
    assert a[b"username"] == b"door" and a[b"realm"] == b"ims.test" and a[b"nonce"] == nonce
    assert a[b"uri"] == req.uri and a[b"qop"] == b"auth" and a[b"nc"] == nc
    ha1 = _md5(b"door", b"ims.test", password)
    ha2 = _md5(req.method, req.uri)
    assert a[b"response"] == _md5(ha1, nonce, nc, a[b"cnonce"], b"auth", ha2)


def _ims_app(password):
    ident = {"aor": "sip:door@example.test"}
    if password:
        ident["password"] = password
    cfg, problems = config.validate({
        "version": 1, "board": "sim", "identity": ident,
        "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
        "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
        "secagree": {"mechanisms": ["ipsec-3gpp"], "require_ipsec": True},
        "ipsec": {"ik": "00112233445566778899aabbccddeeff", "ck": "ffeeddccbbaa99887766554433221100",
                  "algs": [["hmac-sha-1-96", "aes-cbc"]]},
        "owners": ["sip:alice@example.test"]})
    assert problems == [], problems
    return App(cfg, SimBoard(), make_rand(), keepalive_ms=0)


IMS_CHALLENGE = 'Digest realm="ims.test", nonce="%s", algorithm=MD5, qop="auth"'


def test_ims_401_with_security_server_protected_register_answers_the_digest_challenge():
    # 3GPP TS 24.229 5.1.1.5 / RFC 3329 2.3.1: a 401 carrying Security-Server and a Digest
    # challenge starts the agreement; the protected REGISTER carries Security-Verify AND
    # the Authorization for that challenge (the edge and IMS proxies check it)
    app = _ims_app("pw-4-door")
    app.start(0)
    [(r1, _)] = sent(app)
    assert r1.get("Authorization") is None
    answer(app, r1, 401, "Unauthorized", [("WWW-Authenticate", IMS_CHALLENGE % "nA"),
                                          ("Security-Server", IPSEC_SERVER)], 10)
    [(r2, _)] = sent(app)
    assert r2.get("Security-Verify") == IPSEC_SERVER
    _check_digest(r2, b"pw-4-door", b"nA", b"00000001")
    answer(app, r2, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=600")], 20)
    assert app.ua.status() == "registered via ipsec-3gpp"
    # other requests under ipsec carry no credentials (only REGISTER answers the challenge)
    app.ua.send_message(b"sip:alice@example.test", b"hi", b"text/plain", 30)
    [(m, _)] = sent(app)
    assert m.method == b"MESSAGE" and m.get("Authorization") is None
    answer(app, m, 200, "OK", now=40)
    # re-registration: the proxy challenges again with a fresh list and nonce
    app.handle_timer(app.ua.t_refresh)
    [(r3, _)] = sent(app)
    assert r3.get("Security-Verify") == IPSEC_SERVER
    _check_digest(r3, b"pw-4-door", b"nA", b"00000002")
    fresh = IPSEC_SERVER.replace(b"spi-c=1111", b"spi-c=3333")
    answer(app, r3, 401, "Unauthorized", [("WWW-Authenticate", IMS_CHALLENGE % "nB"),
                                          ("Security-Server", fresh)], 480100)
    [(r4, _)] = sent(app)
    assert r4.get("Security-Verify") == fresh
    _check_digest(r4, b"pw-4-door", b"nB", b"00000001")
    answer(app, r4, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=600")], 480200)
    assert app.ua.registered()


def test_ims_401_wrong_password_is_refused_then_no_loop():
    # the same nonce challenged again means the password is wrong: stop, back off
    app = _ims_app("pw-4-door")
    app.start(0)
    [(r1, _)] = sent(app)
    hdrs = [("WWW-Authenticate", IMS_CHALLENGE % "nA"), ("Security-Server", IPSEC_SERVER)]
    answer(app, r1, 401, "Unauthorized", hdrs, 10)
    [(r2, _)] = sent(app)
    answer(app, r2, 403, "Forbidden (digest)", now=20)
    assert app.ua.state == U.BACKOFF and sent(app) == []


def test_ims_401_without_a_password_relies_on_the_sa_keys():
    app = _ims_app(None)
    app.start(0)
    [(r1, _)] = sent(app)
    answer(app, r1, 401, "Unauthorized", [("WWW-Authenticate", IMS_CHALLENGE % "nA"),
                                          ("Security-Server", IPSEC_SERVER)], 10)
    [(r2, _)] = sent(app)
    assert r2.get("Security-Verify") == IPSEC_SERVER and r2.get("Authorization") is None


def test_invite_405_is_retransmitted_until_the_ack():
    # RFC 3261 17.2.1: the 405 to an INVITE is resent on Timer G (T1, doubling) until the
    # ACK arrives; the ACK itself is absorbed, not answered
    app, _ = make_app(keepalive_ms=0)
    register(app)
    inv = incoming("INVITE", "sip:alice@example.test", branch="z9hG4bKinv")
    app.receive(inv, PROXY, True, 100)
    [(r, dst)] = sent(app)
    assert r.status == 405 and dst == PROXY
    first = r.serialize()
    app.handle_timer(600)
    assert [d for d, _ in app.datagrams_to_send()] == [first]
    app.receive(inv, PROXY, True, 700)  # a retransmitted INVITE gets the same 405
    assert [d for d, _ in app.datagrams_to_send()] == [first]
    ack = incoming("ACK", "sip:alice@example.test", branch="z9hG4bKinv")
    app.receive(ack, PROXY, True, 800)
    app.handle_timer(1600)
    app.handle_timer(3600)
    assert app.datagrams_to_send() == []
    assert app.ua.counters["retransmissions_absorbed"] == 1


# --- no registration without a security agreement (RFC 3329 2.3.1; DESIGN.md 4 rules 5, 6) ---

def _ipsec_app(installed, dropped, board=None, on_agreed=None):
    cfg, problems = config.validate({
        "version": 1, "board": "sim", "identity": {"aor": "sip:door@example.test"},
        "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
        "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
        "secagree": {"mechanisms": ["ipsec-3gpp"], "require_ipsec": True},
        "ipsec": {"ik": "00112233445566778899aabbccddeeff", "ck": "ffeeddccbbaa99887766554433221100",
                  "algs": [["hmac-sha-1-96", "aes-cbc"]]},
        "owners": ["sip:alice@example.test"]})
    assert problems == [], problems
    return App(cfg, board or SimBoard(), make_rand(), keepalive_ms=0,
               on_agreed=on_agreed or installed.append, on_drop=dropped.append)


def _logs(app):
    out = []
    app.ua.log = lambda lvl, m: out.append((lvl, m))
    app.sa.log = lambda lvl, m: out.append((lvl, m))
    return out


REFUSE_2XX = "2xx without security agreement: refusing to register unprotected"


def test_2xx_to_the_plain_offer_is_refused_and_spoofed_commands_never_run():
    # require_ipsec: a 200 to the first (plain) REGISTER means the server ignored sec-agree;
    # the device must not count itself registered, and a plain MESSAGE from the proxy's
    # address with a P-Asserted-Identity of an owner must run nothing
    board = SimBoard()
    installed, dropped = [], []
    app = _ipsec_app(installed, dropped, board)
    logs = _logs(app)
    app.start(0)
    [(r1, _)] = sent(app)
    answer(app, r1, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=300")], 5)
    assert app.ua.state == U.BACKOFF and not app.ua.registered()
    assert app.ua.detail == REFUSE_2XX and installed == []
    assert [m for lvl, m in logs if lvl == "error" and m.startswith(REFUSE_2XX)] != []
    assert app.ua.t_backoff is not None and app.get_timer() is not None
    app.receive(incoming("MESSAGE", "sip:mallory@evil.test", b"set relay on",
                         extra=[("P-Asserted-Identity", "<sip:alice@example.test>")]), PROXY, True, 10)
    assert sent(app) == [] and board.writes == 0 and board.values["relay"] is False
    # the backoff ends in a fresh offer, not in an unprotected request
    app.handle_timer(app.ua.t_backoff)
    [(r2, _)] = sent(app)
    assert r2.method == b"REGISTER" and r2.get("Security-Client") is not None
    assert r2.get("Security-Verify") is None and app.ua.state == U.REGISTERING


def test_2xx_to_the_plain_digest_offer_is_refused_too():
    app, board = make_app()
    app.start(0)
    [(r1, _)] = sent(app)
    answer(app, r1, 200, "OK", [("Contact", "<sip:door@127.0.0.1:5064>;expires=300")], 0)
    assert app.ua.state == U.BACKOFF and app.ua.detail == REFUSE_2XX
    app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay on"), PROXY, True, 10)
    assert sent(app) == [] and board.writes == 0


def test_responses_before_the_agreement_only_from_the_proxy():
    app, _ = make_app()
    app.start(0)
    [(r1, _)] = sent(app)
    r = message.response(r1, 494, "Security Agreement Required",
                         [("Security-Server", SERVER), ("WWW-Authenticate", CHALLENGE)], to_tag="x")
    app.receive(r.serialize(), ("10.9.9.9", 5060), False, 5)
    assert sent(app) == [] and app.ua.state == U.REGISTERING
    assert app.ua.counters["ignored_unprotected"] == 1 and app.sa.mechanism() is None
    app.receive(r.serialize(), PROXY, False, 6)  # the same answer from the proxy counts
    [(r2, _)] = sent(app)
    assert r2.get("Security-Verify") is not None and app.sa.mechanism() == "digest"


class _AgDigest:
    mechanism = b"digest"

    def describe(self):
        return "digest"


def test_esp_transport_plain_counts_as_protected_only_under_digest():
    from sipling.shell import net
    from sipling.shell.loop import EspTransport
    cfg = {"local": {"host": "127.0.0.1", "port_c": 47362, "port_s": 47364},
           "proxy": {"host": "127.0.0.1", "port": 47360},
           "ipsec": {"carrier": "udp-encap", "encap_port": 47700, "peer_encap_port": 47701,
                     "ik": "00112233445566778899aabbccddeeff", "ck": "0f0e0d0c0b0a09080706050403020100"}}
    t = EspTransport(cfg, lambda n: bytes(range(n)))
    proxy = net.udp_socket("127.0.0.1", 47360)
    to_s = net.sockaddr("127.0.0.1", 47364)
    try:
        def one(data):
            proxy.sendto(data, to_s)
            return poll_until(lambda: t.recv(t.plain.sock_s))
        # no SAs and no agreement: plain from the proxy's address is not protection
        assert one(b"MESSAGE before") == (b"MESSAGE before", ("127.0.0.1", 47360), False)
        t.agreed(_AgDigest())
        assert one(b"MESSAGE digest") == (b"MESSAGE digest", ("127.0.0.1", 47360), True)
        t.drop(_AgDigest())
        assert one(b"MESSAGE dropped") == (b"MESSAGE dropped", ("127.0.0.1", 47360), False)
    finally:
        proxy.close()
        t.close()


def test_494_to_a_protected_message_alarms_and_backs_off():
    app, _ = make_app(keepalive_ms=0)
    register(app)
    logs = _logs(app)
    app.ua.send_message(b"sip:alice@example.test", b"hello", b"text/plain", 100)
    [(m, _)] = sent(app)
    answer(app, m, 494, "Security Agreement Required", [("Security-Server", SERVER)], 110)
    alarms = [x for lvl, x in logs if lvl == "error" and x.startswith("ALARM: 494 to a protected MESSAGE")]
    assert len(alarms) == 1 and alarms[0].endswith("; renegotiating")
    # the same bounded backoff as a 494 to a REGISTER: nothing is sent until it ends
    assert app.ua.state == U.BACKOFF and app.ua.failures == 1 and sent(app) == []
    assert app.sa.mechanism() is None and not app.sa.protected()
    d = app.ua.t_backoff - 110
    assert 500 <= d <= 1000
    app.handle_timer(app.ua.t_backoff)
    [(r, _)] = sent(app)
    assert r.method == b"REGISTER" and r.get("Security-Client") == b"digest" and r.get("Security-Verify") is None


def test_494_to_a_protected_keepalive_alarms_and_backs_off():
    app, _ = make_app(keepalive_ms=1000)
    register(app)
    logs = _logs(app)
    app.handle_timer(1000)
    [(ka, _)] = sent(app)
    answer(app, ka, 494, "Security Agreement Required", [("Security-Server", SERVER)], 1010)
    assert [x for lvl, x in logs if lvl == "error" and x.startswith("ALARM: 494 to a protected OPTIONS")] != []
    assert app.ua.state == U.BACKOFF and app.ua.failures == 1 and sent(app) == []


# --- one malformed response never leaves the UA stuck (no state without a timer) ---

def _assert_backs_off_then_offers(app, now):
    assert app.ua.state == U.BACKOFF and app.ua.t_backoff is not None
    assert app.get_timer() is not None
    app.handle_timer(app.ua.t_backoff)
    out = sent(app)
    assert len(out) == 1 and out[0][0].method == b"REGISTER" and out[0][0].get("Security-Verify") is None
    assert app.ua.state == U.REGISTERING


def test_non_utf8_security_server_item_does_not_stick_registration():
    app, _ = make_app()
    app.start(0)
    [(r1, _)] = sent(app)
    answer(app, r1, 494, "SAR", [("Security-Server", b'digest;q=0.2;d-alg=md5;d-qop=auth, foo;q=0.1;x="\xff\xfe"'),
                                 ("WWW-Authenticate", CHALLENGE)], 0)
    # the unknown item is refused (logged escaped), digest is agreed and the REGISTER resent
    [(r2, _)] = sent(app)
    assert r2.get("Security-Verify").startswith(b'digest;q=0.2;d-alg=md5;d-qop=auth;d-ver="')
    assert r2.get("Security-Verify").endswith(b'foo;q=0.1;x="\xff\xfe"')
    assert app.ua.state == U.REGISTERING and app.sa.mechanism() == "digest"


def test_reserved_or_equal_peer_spis_are_refused_with_backoff():
    for spis in (b"spi-c=5;spi-s=6", b"spi-c=0;spi-s=4000", b"spi-c=4000;spi-s=4000"):
        installed, dropped = [], []
        app = _ipsec_app(installed, dropped)
        logs = _logs(app)
        app.start(0)
        [(r1, _)] = sent(app)
        ss = b"ipsec-3gpp;q=0.5;prot=esp;mod=trans;" + spis + b";port-c=5066;port-s=5068;alg=hmac-sha-1-96;ealg=aes-cbc"
        answer(app, r1, 494, "SAR", [("Security-Server", ss)], 5)
        assert installed == []
        assert [m for _, m in logs if "no acceptable mechanism" in m and ("reserved" in m or "equals" in m)] != []
        _assert_backs_off_then_offers(app, 5)


def test_exception_in_the_agreement_hook_is_a_failed_attempt():
    # the transport refusing the SAs (install_3gpp raising) must not strand the UA
    def boom(ag):
        raise ValueError("SA database full")
    installed, dropped = [], []
    app = _ipsec_app(installed, dropped, on_agreed=boom)
    logs = _logs(app)
    app.start(0)
    [(r1, _)] = sent(app)
    answer(app, r1, 494, "SAR", [("Security-Server", IPSEC_SERVER)], 5)
    assert ("error", "response to REGISTER not usable (ValueError: SA database full)") in logs
    assert app.ua.detail == "response not usable: ValueError"
    _assert_backs_off_then_offers(app, 5)


def test_a_strangers_invite_does_not_disable_control():
    # issue 10 finding 4: a Completed INVITE server transaction (405, waiting for its ACK)
    # must not break the bookkeeping of the answers after it: every owner command still
    # gets its 200, runs once and is replied to
    app, board = make_app(keepalive_ms=0)
    register(app)
    app.receive(incoming("INVITE", "sip:mallory@evil.test", branch="z9hG4bKinv", pai=False), PROXY, True, 10)
    [(r, _)] = sent(app)
    assert r.status == 405
    for i in range(KEEP_PLUS):
        app.receive(incoming("MESSAGE", "sip:alice@example.test", b"set relay %s" % (b"on" if i % 2 else b"off"),
                             branch="z9hG4bKm%d" % i), PROXY, True, 20 + i)
        out = sent(app)
        assert [m.status for m, _ in out if not m.is_request] == [200], i
        assert [m.method for m, _ in out if m.is_request] == [b"MESSAGE"], i
    assert app.ua.counters["commands"] == KEEP_PLUS and board.writes == KEEP_PLUS


KEEP_PLUS = uac.KEEP + 3
