# Choosing from Security-Server (RFC 3329 2.2, 2.3.1, 2.4, Appendix A; DESIGN.md 4 rules 2, 3, 6).
from util import raises
from secagree_util import lines_of

from sipling.secagree.choose import choose, Abort
from sipling.secagree.policy import Policy, PolicyError, from_config

SHA_NULL = ("hmac-sha-1-96", "null")
SHA_AES = ("hmac-sha-1-96", "aes-cbc")
MD5_AES = ("hmac-md5-96", "aes-cbc")
MD5_NULL = ("hmac-md5-96", "null")


def pol(**kw):
    d = dict(mechanisms=("ipsec-3gpp", "ipsec-man", "digest"), ipsec_algs=(SHA_NULL, SHA_AES),
             digest=True)
    d.update(kw)
    return Policy(**d)


def test_kamailio_example_picks_digest_by_q():
    lines = lines_of("secagree/kamailio_example_cfg.txt")
    best, ip, refused = choose(lines, pol(), has_challenge=True)
    assert best.name == b"digest" and best.q == 200 and ip is None
    assert refused == [(lines[0], "lower q than 0.200")]


def test_require_ipsec_refuses_digest_and_picks_ipsec():
    lines = lines_of("secagree/kamailio_example_cfg.txt")
    best, ip, refused = choose(lines, pol(require_ipsec=True), has_challenge=False)
    assert best.name == b"ipsec-3gpp"
    assert (ip["alg"], ip["ealg"], ip["spi_c"], ip["spi_s"], ip["port_c"], ip["port_s"]) == (
        b"hmac-sha-1-96", b"null", 11111, 22222, 5063, 5065)
    assert refused == [(b"digest;q=0.2", "policy requires ipsec")]


def test_missing_challenge_aborts_and_never_falls_back():
    lines = lines_of("secagree/kamailio_example_cfg.txt")
    e = raises(Abort, choose, lines, pol(), False)
    assert str(e) == "chosen digest but the response has no Digest challenge (RFC 3329 2.3.1: agreement aborted)"


def test_equal_and_missing_q_abort():
    e = raises(Abort, choose, [b"digest;q=0.2", b"ipsec-man;q=0.200"], pol(ipsec_man=True), True)
    assert str(e) == ("Security-Server lists q=0.200 twice (digest;q=0.2 and ipsec-man;q=0.200): "
                      "RFC 3329 2.2 says this is an error")
    # equal q among lines we do not even know is still an erroneous list
    e = raises(Abort, choose, [b"foo;q=0.1", b"bar;q=0.1", b"digest;q=0.5"], pol(), True)
    assert str(e).startswith("Security-Server lists q=0.100 twice")
    e = raises(Abort, choose, [b"digest;q=0.2, ipsec-man"], pol(ipsec_man=True), True)
    assert str(e) == "Security-Server ipsec-man has no q: cannot rank it (RFC 3329 2.2)"


def test_unparseable_list_aborts():
    e = raises(Abort, choose, [b"digest;q=0.2;q=0.3"], pol(), True)
    assert str(e) == "unparseable Security-Server (repeated parameter q)"


def _line(q, alg, ealg, spi=1000):
    return ("ipsec-3gpp;q=%s;prot=esp;mod=trans;spi-c=%d;spi-s=%d;port-c=6000;port-s=6001;alg=%s;ealg=%s"
            % (q, spi, spi + 1, alg, ealg)).encode()


def test_ipsec_each_line_is_its_own_candidate():
    lines = [_line("0.4", *SHA_AES, spi=1001), _line("0.3", *MD5_AES, spi=1003),
             _line("0.2", *SHA_NULL, spi=1005), _line("0.1", *MD5_NULL, spi=1007)]
    best, ip, refused = choose(lines, pol(ipsec_algs=(SHA_NULL, MD5_AES)), False)
    assert (ip["alg"], ip["ealg"], ip["spi_c"]) == (b"hmac-md5-96", b"aes-cbc", 1003)
    reasons = [w for _, w in refused]
    assert reasons == ["alg=hmac-sha-1-96 ealg=aes-cbc was not offered",
                       "alg=hmac-md5-96 ealg=null was not offered",
                       "lower q than 0.300"]


def test_alg_and_ealg_are_never_picked_independently():
    # sha1 and aes-cbc both appear, but never together: no pair we offered is there.
    lines = [_line("0.1", *SHA_NULL), _line("0.2", *MD5_AES)]
    e = raises(Abort, choose, lines, pol(ipsec_algs=(SHA_AES, MD5_NULL), digest=False,
                                         mechanisms=("ipsec-3gpp",)), False)
    assert str(e) == ("no acceptable mechanism in Security-Server: "
                      "ipsec-3gpp;q=0.1;prot=esp;mod=trans;spi-c=1000;spi-s=1001;po...: "
                      "alg=hmac-sha-1-96 ealg=null was not offered; "
                      "ipsec-3gpp;q=0.2;prot=esp;mod=trans;spi-c=1000;spi-s=1001;po...: "
                      "alg=hmac-md5-96 ealg=aes-cbc was not offered")


def test_appendix_a_single_spi_form_is_refused_with_reason():
    lines = [b"ipsec-3gpp;q=0.3;alg=hmac-sha-1-96;ealg=null;spi=7;port1=5060;port2=5061", b"digest;q=0.1"]
    best, ip, refused = choose(lines, pol(), True)
    assert best.name == b"digest"
    assert refused[0] == (lines[0], "single-SPI form (RFC 3329 App. A spi/port1/port2) cannot be set up as four SAs")


def test_absent_ealg_means_null():
    best, ip, _ = choose([b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;spi-c=1001;spi-s=1002;port-c=3;port-s=4"],
                         pol(), False)
    assert ip["ealg"] == b"null"


def test_missing_spis_or_ports_abort():
    for line, missing in (
            (b"ipsec-3gpp;q=0.5;alg=hmac-sha-1-96;ealg=null;spi-s=1002;port-s=4", "spi-c,port-c"),
            (b"ipsec-3gpp;q=0.5;alg=hmac-sha-1-96;ealg=null", "spi-c,spi-s,port-c,port-s"),
            (b"ipsec-3gpp;q=0.5;ealg=null;spi-c=1001;spi-s=1002;port-c=3;port-s=4", "alg")):
        e = raises(Abort, choose, [line, b"digest;q=0.1"], pol(), True)
        assert str(e) == "chosen ipsec-3gpp lacks %s (RFC 3329 2.3.1: agreement aborted)" % missing


def test_prot_mod_and_digest_params_we_cannot_run_are_refused():
    lines = [b"ipsec-3gpp;q=0.9;prot=ah;alg=hmac-sha-1-96;ealg=null;spi-c=1;spi-s=2;port-c=3;port-s=4",
             b"ipsec-3gpp;q=0.8;mod=tun;alg=hmac-sha-1-96;ealg=null;spi-c=1;spi-s=2;port-c=3;port-s=4",
             b"digest;q=0.7;d-alg=AKAv1-MD5", b"digest;q=0.6;d-qop=auth-conf",
             b"digest;q=0.5;d-alg=md5;d-qop=auth-int"]
    best, ip, refused = choose(lines, pol(), True)
    assert best.raw == lines[4]
    assert [w for _, w in refused] == ["prot=ah not supported (ESP only)",
                                       "mod=tun not supported (transport only)",
                                       "d-alg=AKAv1-MD5 not supported",
                                       "d-qop=auth-conf not supported"]


def test_rfc3329_example_server_list_has_nothing_for_us():
    lines = lines_of("secagree/rfc3329_4_1_server.txt")
    e = raises(Abort, choose, lines, pol(), True)
    assert str(e) == ("no acceptable mechanism in Security-Server: ipsec-ike;q=0.1: not implemented; "
                      "tls;q=0.2: not allowed by config")
    best, _, _ = choose(lines, pol(tls=True, mechanisms=("tls", "digest")), False)
    assert best.name == b"tls"


def test_ipsec_man_is_chosen_as_is():
    best, ip, refused = choose([b"ipsec-man;q=0.3", b"digest;q=0.2"], pol(ipsec_man=True), True)
    assert best.name == b"ipsec-man" and ip is None


def test_policy_never_allows_no_protection():
    e = raises(PolicyError, Policy, mechanisms=("digest",), require_ipsec=True, digest=True)
    assert "never runs without protection" in str(e)
    e = raises(PolicyError, Policy, mechanisms=("ipsec-3gpp",), ipsec_algs=(("hmac-sha-1-96", "aes-gcm"),))
    assert str(e) == "ipsec alg pair hmac-sha-1-96/aes-gcm is not supported"


def test_policy_from_device_config():
    cfg = {"identity": {"password": "s3cret"}, "local": {"port_c": 5062, "port_s": 5064},
           "secagree": {"mechanisms": ["ipsec-3gpp", "ipsec-man", "digest"], "require_ipsec": False},
           "ipsec": {"ik": "00" * 16, "ck": "11" * 16,
                     "algs": [["hmac-sha-1-96", "aes-cbc"], ["hmac-sha-1-96", "null"]]},
           "ipsec_man": {"alg": "hmac-sha-1-96"}}
    p = from_config(cfg)
    assert p.offered() == [b"ipsec-3gpp", b"ipsec-man", b"digest"]
    assert p.ipsec_algs == ((b"hmac-sha-1-96", b"aes-cbc"), (b"hmac-sha-1-96", b"null"))
    cfg["secagree"]["require_ipsec"] = True
    assert from_config(cfg).offered() == [b"ipsec-3gpp", b"ipsec-man"]
    del cfg["ipsec"]["ik"]   # no keys: ipsec-3gpp cannot run, so it is not offered
    assert from_config(cfg).offered() == [b"ipsec-man"]


def test_policy_accepts_every_pair_the_device_config_accepts():
    from sipling import config
    pairs = [(a, e) for a in config.ALGS for e in config.EALGS]
    p = Policy(mechanisms=("ipsec-3gpp",), ipsec_algs=pairs)
    assert len(p.ipsec_algs) == len(pairs)


def test_reserved_and_equal_spis_are_refused_with_reason():
    # RFC 4303 2.1: SPI 1-255 reserved, 0 never used; the four SAs need distinct SPIs
    base = "ipsec-3gpp;q=0.%d;prot=esp;mod=trans;%s;port-c=6000;port-s=6001;alg=hmac-sha-1-96;ealg=aes-cbc"
    lines = [(base % (9, "spi-c=5;spi-s=1000")).encode(), (base % (8, "spi-c=1000;spi-s=0")).encode(),
             (base % (7, "spi-c=4000;spi-s=4000")).encode(), (base % (6, "spi-c=255;spi-s=256")).encode(),
             b"digest;q=0.1"]
    best, ip, refused = choose(lines, pol(), True)
    assert best.name == b"digest"
    assert refused == [(lines[0], "spi-c=5 is reserved (RFC 4303 2.1: SPI 0-255 cannot name an SA)"),
                       (lines[1], "spi-s=0 is reserved (RFC 4303 2.1: SPI 0-255 cannot name an SA)"),
                       (lines[2], "spi-c equals spi-s (4000): the four SAs need distinct SPIs"),
                       (lines[3], "spi-c=255 is reserved (RFC 4303 2.1: SPI 0-255 cannot name an SA)")]
    e = raises(Abort, choose, lines[:1], pol(), False)
    assert str(e).startswith("no acceptable mechanism in Security-Server: ")
    assert str(e).endswith(": spi-c=5 is reserved (RFC 4303 2.1: SPI 0-255 cannot name an SA)")
    # the lowest usable SPI is accepted
    best, ip, _ = choose([(base % (5, "spi-c=256;spi-s=257")).encode()], pol(), False)
    assert (ip["spi_c"], ip["spi_s"]) == (256, 257)


def test_log_text_of_peer_bytes_is_ascii_and_never_raises():
    from sipling.secagree.choose import short
    assert short(b'foo;q=0.1;x="\xff\xfe"') == 'foo;q=0.1;x="\\xff\\xfe"'
    assert short(b"a\r\nInjected: 1") == "a\\x0d\\x0aInjected: 1"
    # a cut through a multi-byte UTF-8 character (60 bytes of 2-byte characters + 1)
    s = short(b"x" + "\u00e9".encode() * 40)
    assert s == "x" + "\\xc3\\xa9" * 29 + "\\xc3..."
    e = raises(Abort, choose, [b'digest;q=0.2;d-alg="m\xffd5"'], pol(), True)
    assert str(e) == 'no acceptable mechanism in Security-Server: digest;q=0.2;d-alg="m\\xffd5": d-alg=m\\xffd5 not supported'
