# Device config validation (firmware/sipling/config.py, docs/config.md): one line per problem.
import json

from sipling import config

IK = "00112233445566778899aabbccddeeff"
CK = "ffeeddccbbaa99887766554433221100"


def good():
    return {
        "version": 1,
        "board": "sim",
        "identity": {"aor": "sip:door@example.test", "auth_user": "door", "password": "s3cret"},
        "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
        "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
        "secagree": {"mechanisms": ["ipsec-3gpp", "digest"], "require_ipsec": False},
        "ipsec": {"carrier": "udp-encap", "ik": IK, "ck": CK},
        "owners": ["sip:alice@example.test"],
    }


def test_good_config_has_no_problems_and_defaults():
    cfg, problems = config.validate(good())
    assert problems == []
    assert cfg["register"]["expires"] == 600
    assert cfg["log"] == {"level": "info", "trace_sip": False}
    assert cfg["ipsec"]["encap_port"] == 4500
    assert cfg["ipsec"]["algs"] == config.DEFAULT_ALGS
    assert cfg["identity"]["auth_user"] == "door"
    assert cfg["owners"] == ["sip:alice@example.test"]


def test_auth_user_defaults_to_aor_user():
    c = good()
    del c["identity"]["auth_user"]
    cfg, problems = config.validate(c)
    assert problems == []
    assert cfg["identity"]["auth_user"] == "door"


def test_one_line_per_problem():
    c = good()
    c["proxy"]["port"] = 70000
    c["owners"] = ["alice"]
    c["secagree"]["mechanisms"] = ["digest", "kerberos"]
    c["log"] = {"level": "loud"}
    cfg, problems = config.validate(c)
    assert problems == [
        "secagree.mechanisms: unknown mechanism \"kerberos\"; use ipsec-3gpp, ipsec-man, digest, tls",
        "proxy.port: must be a whole number from 1 to 65535, got 70000",
        "owners[0]: must be a SIP URI like \"sip:alice@example.test\", got \"alice\"",
        "log.level: must be one of debug, info, warn, error, got \"loud\"",
    ], problems


def test_missing_sections_and_unknown_key():
    cfg, problems = config.validate({"version": 1, "board": "sim", "owner": []})
    assert "owner: unknown key; known keys are " + ", ".join(config._KEYS) in problems
    assert "identity: missing; add the \"identity\" object (see docs/config.md)" in problems
    assert "proxy: missing; add the \"proxy\" object (see docs/config.md)" in problems
    assert any(p.startswith("owners: must list at least one SIP URI") for p in problems)


def test_keys_are_never_echoed():
    c = good()
    c["ipsec"]["ik"] = "SECRETSECRETSECRET"
    c["identity"]["password"] = 12345678
    cfg, problems = config.validate(c)
    assert len(problems) == 2
    for p in problems:
        assert "SECRET" not in p and "12345678" not in p
    assert problems[1].startswith("ipsec.ik: must be 32 lower-case hex digits")


def test_require_ipsec_without_ipsec_mechanism():
    c = good()
    c["secagree"] = {"mechanisms": ["digest"], "require_ipsec": True}
    del c["ipsec"]
    cfg, problems = config.validate(c)
    assert len(problems) == 1 and problems[0].startswith("secagree.require_ipsec: is true but")


def test_ipsec_man_needs_its_sas():
    c = good()
    c["secagree"]["mechanisms"] = ["ipsec-man"]
    c["ipsec_man"] = {"alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": IK, "ck": CK,
                      "spi_uc": 1001, "spi_us": 1002, "spi_pc": 2001,
                      "port_uc": 5062, "port_us": 5064, "port_pc": 5066, "port_ps": 5068}
    cfg, problems = config.validate(c)
    assert problems == ["ipsec_man.spi_ps: missing; set a number from 256 to 4294967295"], problems
    c["ipsec_man"]["spi_ps"] = 4294967295
    cfg, problems = config.validate(c)
    assert problems == [] and cfg["ipsec_man"]["spi_ps"] == 4294967295


def test_bad_alg_pair_and_same_ports():
    c = good()
    c["ipsec"]["algs"] = [["hmac-sha-1-96", "aes-cbc"], ["sha1", "aes-cbc"]]
    c["local"]["port_s"] = 5062
    cfg, problems = config.validate(c)
    assert problems[0] == "local.port_s: must differ from local.port_c (RFC 3329 Appendix A uses two ports)"
    assert problems[1].startswith("ipsec.algs[1]: must be [alg, ealg]")
    assert cfg["ipsec"]["algs"] == [["hmac-sha-1-96", "aes-cbc"]]


def test_hostnames_refused_and_bools_are_not_numbers():
    c = good()
    c["proxy"]["host"] = "proxy.example.test"
    c["register"] = {"expires": True}
    cfg, problems = config.validate(c)
    assert problems == [
        "proxy.host: must be an IPv4 address like 192.168.1.10, got \"proxy.example.test\" (no DNS on the board)",
        "register.expires: must be a whole number from 60 to 86400, got true",
    ], problems


def test_loads_bad_json_is_one_line():
    cfg, problems = config.loads('{"version": 1, "board": ')
    assert len(problems) == 1 and problems[0].startswith("config: not valid JSON")
    cfg, problems = config.loads("[1, 2]")
    assert problems == ["config: must be a JSON object {...}, got a list"]


def test_load_missing_file():
    cfg, problems = config.load("/nonexistent/sipling.json")
    assert problems == ["config: cannot read /nonexistent/sipling.json; provision the board "
                        "(`sipling provision`) or pass --config FILE"]


def test_loads_roundtrip_of_docs_example_shape():
    cfg, problems = config.loads(json.dumps(good()))
    assert problems == []
    assert cfg["proxy"] == {"host": "127.0.0.1", "port": 5060, "domain": "example.test"}


def test_unknown_keys_below_the_top_level_are_reported():
    # issue 10 finding 11: a typo in a safety switch must not read as "valid"
    c = good()
    c["secagree"]["require_ipsek"] = True
    c["register"] = {"expirse": 300}
    c["ipsec"]["encap-port"] = 4501
    c["control"] = {"trust_form": True}
    _, problems = config.validate(c)
    assert problems == [
        "secagree.require_ipsek: unknown key; known keys are mechanisms, require_ipsec",
        "ipsec.encap-port: unknown key; known keys are carrier, encap_port, peer_encap_port, ik, ck, algs",
        "control.trust_form: unknown key; known keys are digest_commands, trust_from",
        "register.expirse: unknown key; known keys are expires, keepalive",
    ]


def test_ipsec_is_required_by_default_and_digest_needs_an_explicit_opt_in():
    # issue 10 finding 1: no security section -> ipsec-3gpp only, IPsec required
    c = good()
    del c["secagree"]
    cfg, problems = config.validate(c)
    assert problems == []
    assert cfg["secagree"] == {"mechanisms": ["ipsec-3gpp"], "require_ipsec": True}
    assert cfg["control"] == {"digest_commands": False, "trust_from": False}
    # digest listed without require_ipsec false is a contradiction, said in one line
    c["secagree"] = {"mechanisms": ["ipsec-3gpp", "digest"]}
    _, problems = config.validate(c)
    assert problems == ['secagree.mechanisms: lists digest but secagree.require_ipsec is true (the default); '
                        'set "require_ipsec": false to allow it (`sipling provision --allow-digest`)']
    from sipling.secagree import policy
    cfg, _ = config.validate(good())
    cfg["secagree"] = {"mechanisms": ["ipsec-3gpp", "digest"]}  # a hand-made cfg without the key
    assert policy.from_config(cfg).require_ipsec is True
