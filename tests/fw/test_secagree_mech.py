# RFC 3329 2.2 sec-mechanism list parsing: every server style gives the same result.
from util import raises
from secagree_util import lines_of

from sipling.secagree import mech
from sipling.secagree.mech import ParseError, parse_lines, parse_mech
from sipling.secagree.choose import ipsec_params

KAM = b"ipsec-3gpp;q=0.1;prot=esp;mod=trans;spi-c=4294967295;spi-s=3000000001;port-c=5100;port-s=5101;alg=hmac-sha-1-96;ealg=aes-cbc"
WANT = {"alg": b"hmac-sha-1-96", "ealg": b"aes-cbc", "prot": b"esp", "mod": b"trans",
        "spi_c": 4294967295, "spi_s": 3000000001, "port_c": 5100, "port_s": 5101}


def _one(lines):
    ms = parse_lines(lines)
    assert len(ms) == 1, ms
    return ms[0]


def test_kamailio_line_whole():
    m = _one([KAM])
    assert m.name == b"ipsec-3gpp"
    assert m.q == 100
    assert m.raw == KAM
    assert m.order == [b"q", b"prot", b"mod", b"spi-c", b"spi-s", b"port-c", b"port-s", b"alg", b"ealg"]
    assert ipsec_params(m) == WANT


def test_real_server_styles_give_same_result():
    # Kamailio ims_ipsec_pcscf, OpenSIPS proto_ipsec (spi-s before spi-c), OpenIMSCore
    # P-CSCF ("; " and q last): tests/vectors/secagree/README.md names the sources.
    for f in ("kamailio_ims_ipsec_pcscf.txt", "opensips_proto_ipsec.txt", "openimscore_pcscf.txt"):
        m = _one(lines_of("secagree/" + f))
        assert m.name == b"ipsec-3gpp", f
        assert m.q == 100, f
        assert ipsec_params(m) == WANT, (f, ipsec_params(m))


def test_case_spaces_and_unknown_params_do_not_matter():
    variants = [
        b"IPSEC-3GPP;Q=0.1;PROT=ESP;MOD=TRANS;SPI-C=4294967295;SPI-S=3000000001;PORT-C=5100;PORT-S=5101;ALG=HMAC-SHA-1-96;EALG=AES-CBC",
        b"  ipsec-3gpp ; q = 0.1 ;\tprot=esp;mod=trans ; spi-c=4294967295;spi-s=3000000001;port-c=5100;port-s=5101;alg=hmac-sha-1-96;ealg=aes-cbc  ",
        b"ipsec-3gpp;x-vendor=\"a,b;c\";q=0.100;flag;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=4294967295;spi-s=3000000001;port-c=5100;port-s=5101",
        b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=4294967295;spi-s=3000000001;port-c=5100;port-s=5101\r\n ;ext=[2001:db8::1]",
    ]
    for v in variants:
        m = _one([v])
        assert m.name == b"ipsec-3gpp", v
        assert m.q == 100, v
        assert ipsec_params(m) == WANT, (v, ipsec_params(m))
    assert _one([variants[2]]).get(b"x-vendor") == b"a,b;c"
    assert _one([variants[2]]).get(b"flag") == b""


def test_one_header_per_mechanism_equals_comma_joined():
    split = lines_of("secagree/kamailio_example_cfg.txt")
    assert len(split) == 2
    joined = [b", ".join(split)]
    joined_tight = [b",".join(split)]
    a = [(m.name, m.q, m.params) for m in parse_lines(split)]
    for other in (joined, joined_tight):
        assert [(m.name, m.q, m.params) for m in parse_lines(other)] == a
    assert [m.name for m in parse_lines(split)] == [b"ipsec-3gpp", b"digest"]
    assert [m.q for m in parse_lines(split)] == [100, 200]


def test_quoted_commas_do_not_split():
    ms = parse_lines([b'digest;q=0.2;note="x, y; z",tls;q=0.3'])
    assert [m.name for m in ms] == [b"digest", b"tls"]
    assert ms[0].get(b"note") == b"x, y; z"
    ms = parse_lines([b'digest;q=0.2;note="say \\"a,b\\""'])
    assert ms[0].get(b"note") == b'say "a,b"'


def test_values_over_one_kilobyte():
    big = b"x" * 1500
    v = KAM + b";x-pad=" + big + b';x-q="' + b"a, " * 400 + b'"'
    assert len(v) > 2048
    m = _one([v])
    assert m.get(b"x-pad") == big
    assert ipsec_params(m) == WANT
    assert m.raw == v


def test_appendix_a_spelling():
    m = _one(lines_of("secagree/rfc3329_appendix_a.txt"))
    p = ipsec_params(m)
    assert p["spi_s"] == 3000000001 and p["spi_c"] == 3000000001
    assert p["port_s"] == 5101 and p["port_c"] == 5100
    # port2 is optional (Appendix A): port-c defaults to port1
    p = ipsec_params(parse_mech(b"ipsec-3gpp;alg=hmac-md5-96;spi=7;port1=5060"))
    assert (p["spi_c"], p["spi_s"], p["port_c"], p["port_s"]) == (7, 7, 5060, 5060)
    # defaults: prot=esp, mod=trans, no ealg = null
    assert (p["prot"], p["mod"], p["ealg"]) == (b"esp", b"trans", b"null")
    raises(ParseError, ipsec_params, parse_mech(b"ipsec-3gpp;spi=1;spi-c=2;port1=5;port-s=6"))


def test_spi_bounds():
    p = ipsec_params(parse_mech(b"ipsec-3gpp;spi-c=0;spi-s=4294967295;port-c=1;port-s=65535"))
    assert p["spi_c"] == 0 and p["spi_s"] == 4294967295 and p["port_s"] == 65535
    for bad in (b"spi-c=4294967296", b"spi-c=99999999999", b"spi-c=-1", b"spi-c=1e3",
                b"spi-c=0x10", b"port-c=65536", b"port-c=0"):
        m = parse_mech(b"ipsec-3gpp;" + bad + b";spi-s=1;port-s=5")
        e = raises(ParseError, ipsec_params, m)
        assert str(e), bad
    # an empty value is not a gen-value at all
    e = raises(ParseError, parse_mech, b"ipsec-3gpp;spi-c=;spi-s=1")
    assert str(e) == "bad parameter value"


def test_qvalue_grammar():
    for v, q in ((b"0", 0), (b"0.", 0), (b"0.1", 100), (b"0.05", 50), (b"0.999", 999),
                 (b"1", 1000), (b"1.000", 1000), (b"1.", 1000)):
        assert mech.parse_qvalue(v) == q, v
    for v in (b"", b"1.001", b"2", b"0.1234", b".5", b"0,5", b"-0", b"0.a", b"01"):
        raises(ParseError, mech.parse_qvalue, v)
    raises(ParseError, parse_lines, [b"digest;q=1.5"])


def test_garbage_is_refused_with_exact_reason():
    cases = (
        ([b""], "empty mechanism"),
        ([b"digest;q=0.1,"], "empty mechanism"),
        ([b"digest;q=0.1,,tls;q=0.2"], "empty mechanism"),
        ([b"dig est;q=0.1"], "bad mechanism-name"),
        ([b"digest;q=0.1;q=0.2"], "repeated parameter q"),
        ([b"digest;=x"], "bad parameter name"),
        ([b'digest;x="abc'], "unterminated quoted-string"),
        ([b"digest;x=a b"], "bad parameter value"),
        ([b"digest;q=0.1;\x00"], "bad parameter name"),
        ([b"ipsec-3gpp;q=0.1;alg=hmac-sha-1-96\x7f"], "bad parameter value"),
        ([], "empty list"),
    )
    for lines, why in cases:
        e = raises(ParseError, parse_lines, lines)
        assert str(e) == why, (lines, str(e))


def test_every_prefix_parses_or_raises_parse_error():
    line = b'ipsec-3gpp;q=0.1;x="a,b";alg=hmac-sha-1-96, digest;q=0.2'
    for i in range(len(line) + 1):
        try:
            parse_lines([line[:i]])
        except ParseError:
            pass
    # trailing garbage after a valid list
    raises(ParseError, parse_lines, [line + b";\x01"])
    raises(ParseError, parse_lines, [line + b',"x'])


def test_handset_offer_four_pairs():
    ms = parse_lines(lines_of("secagree/handset_four_pairs_client.txt", b"Security-Client"))
    pairs = [(ipsec_params(m)["alg"], ipsec_params(m)["ealg"]) for m in ms]
    assert pairs == [(b"hmac-sha-1-96", b"aes-cbc"), (b"hmac-sha-1-96", b"null"),
                     (b"hmac-md5-96", b"aes-cbc"), (b"hmac-md5-96", b"null")]
    assert all(m.q is None for m in ms)
    assert all(ipsec_params(m)["spi_c"] == 3791561917 for m in ms)


def test_serialize_round_trip():
    v = mech.serialize(b"ipsec-3gpp", ((b"prot", b"esp"), (b"spi-c", 4294967295), (b"port-c", 5100), (b"flag", None)))
    assert v == b"ipsec-3gpp;prot=esp;spi-c=4294967295;port-c=5100;flag"
    m = parse_mech(v)
    assert m.raw == v and m.get(b"spi-c") == b"4294967295" and m.get(b"flag") == b""


def test_option_tags():
    assert mech.option_tags([b"path, SEC-AGREE", b" timer"]) == {b"path", b"sec-agree", b"timer"}
    assert b"sec-agree" not in mech.option_tags([b"sec-agreement"])


def _rng(seed):
    state = [seed]

    def r(n):
        state[0] = (state[0] * 1103515245 + 12345) & 0x7FFFFFFF
        return (state[0] >> 8) % n
    return r


def _random_list(r):
    names = [b"ipsec-3gpp", b"digest", b"tls", b"ipsec-man", b"x-foo", b"ipsec-ike"]
    qs = list(range(0, 1001, 7))
    out = []
    for i in range(1 + r(4)):
        params = [(b"q", b"0.%03d" % qs.pop(r(len(qs))))]
        for j in range(r(6)):
            k = b"p%d" % j
            kind = r(3)
            if kind == 0:
                v = b"%d" % (r(4294967) * 1000 + r(1000))
            elif kind == 1:
                v = b"tok-" + b"abc.!%*_+`'~"[r(5):]
            else:
                v = b'"' + b"x, y; z=w"[r(4):] + b'"'
            params.append((k, v))
        out.append((names[r(len(names))], params))
    return out


def _render(mlist, r, style):
    items = []
    for name, params in mlist:
        ps = list(params)
        if style >= 2:   # shuffle parameter order
            for i in range(len(ps) - 1, 0, -1):
                j = r(i + 1)
                ps[i], ps[j] = ps[j], ps[i]
        parts = [name.upper() if style >= 3 and r(2) else name]
        for k, v in ps:
            sp = b" " * r(3) if style >= 1 else b""
            kk = k.upper() if style >= 3 and r(2) else k
            parts.append(sp + b";" + sp + kk + sp + b"=" + sp + v)
        items.append(b"".join(parts))
    if style % 2:
        return [(b" , " if style >= 1 else b",").join(items)]
    return items


def _canon(ms):
    return sorted((m.name, m.q, sorted(m.params.items())) for m in ms)


def test_every_style_of_the_same_list_parses_the_same():
    # deterministic pseudo-random lists, rendered split/joined, spaced, shuffled, mixed case
    r = _rng(20260101)
    for _ in range(150):
        ml = _random_list(r)
        want = _canon(parse_lines(_render(ml, r, 0)))
        assert len(want) == len(ml)
        for style in (1, 2, 3, 4, 5):
            lines = _render(ml, r, style)
            assert _canon(parse_lines(lines)) == want, (lines, want)
