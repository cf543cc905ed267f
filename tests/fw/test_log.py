# sipling.log: line format, levels, redact guard, SIP trace framing (both interpreters).
import binascii

from sipling import log


def _capture(level="debug"):
    lines = []
    log.set_sink(lines.append)
    log.set_clock(lambda: 1234)
    log.set_level(level)
    log.set_trace(True)
    return lines


def _reset():
    log.set_sink(None)
    log.set_clock(None)
    log.set_level("info")


def test_line_format_and_levels():
    lines = _capture("info")
    log.debug("ua", "hidden")
    log.info("ua", "registered")
    log.warn("secagree", "494 again")
    log.error("esp", "icv")
    _reset()
    assert lines == ["1234 INFO ua: registered\n", "1234 WARN secagree: 494 again\n",
                     "1234 ERROR esp: icv\n"]


def test_level_names_and_bad_level():
    lines = _capture("error")
    log.warn("m", "x")
    log.set_level(log.DEBUG)
    log.debug("m", "y")
    _reset()
    assert lines == ["1234 DEBUG m: y\n"]
    try:
        log.set_level("loud")
    except ValueError:
        return
    raise AssertionError("bad level accepted")


def test_newlines_in_message_stay_one_line():
    lines = _capture()
    log.info("m", "a\r\nb")
    _reset()
    assert lines == ["1234 INFO m: a  | b\n"]


def test_redact_fields():
    r = log.redact
    assert r("password=s3cret user=door") == "password=*** user=door"
    assert r('{"ik": "00112233", "port": 5}') == '{"ik": ***, "port": 5}'
    assert r("CK: abcd ok") == "CK: *** ok"
    assert r("psk=x;a=b") == "psk=***;a=b"
    # words that merely contain the letters stay
    assert r("lock=1 check: fine keys=3") == "lock=1 check: fine keys=3"
    assert r("no secrets here") == "no secrets here"


def test_redact_hex_runs():
    key = "00112233445566778899aabbccddeeff"
    assert log.redact("got " + key + " end") == "got <hex:32> end"
    assert log.redact("sha " + key[:16]) == "sha " + key[:16]


def test_key_never_reaches_sink():
    lines = _capture()
    key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    log.info("cfg", "loaded ik=%s ck=%s password=%s" % (key, key, "hunter2"))
    log.error("cfg", "bad key " + key)
    _reset()
    for ln in lines:
        assert key not in ln and "hunter2" not in ln


def test_trace_line_roundtrip():
    lines = _capture()
    msg = b"REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5064\r\n\r\n"
    log.trace("out", "udp", ("127.0.0.1", 5062), "127.0.0.1:5060", msg)
    _reset()
    assert len(lines) == 1
    f = lines[0].rstrip("\n").split(" ")
    assert f[:6] == ["1234", "TRACE", "out", "udp", "127.0.0.1:5062", "127.0.0.1:5060"]
    assert len(f) == 7
    assert binascii.a2b_base64(f[6]) == msg


def test_trace_off():
    lines = _capture()
    log.set_trace(False)
    log.trace("in", "udp", "1.2.3.4:5", "6.7.8.9:10", b"x")
    log.set_trace(True)
    _reset()
    assert lines == []


def test_recent_ring_and_failing_sink():
    def bad(line):
        raise OSError(5)
    log.set_sink(bad)
    log.set_level("info")
    for i in range(40):
        log.info("m", "n%d" % i)
    r = log.recent()
    assert len(r) == 8                         # the default ring
    assert r[0].endswith("m: n32\n") and r[-1].endswith("m: n39\n")
    log.set_ring(3)                            # shrinking keeps the newest
    assert [x[-4:] for x in log.recent()] == ["n37\n", "n38\n", "n39\n"]
    log.set_ring(32)
    for i in range(40):
        log.info("m", "k%d" % i)
    r = log.recent()
    log.set_ring(0)                            # none kept
    log.info("m", "gone")
    none = log.recent()
    log.set_ring(8)
    _reset()
    assert len(r) == 32
    assert r[0].endswith("m: k8\n") and r[-1].endswith("m: k39\n")
    assert none == []


def test_redact_repeated_and_mixed():
    r = log.redact
    assert r("ik=aa ik=bb ck=cc") == "ik=*** ik=*** ck=***"
    k = "ab" * 20
    assert r("x " + k + " y " + k) == "x <hex:40> y <hex:40>"
    assert r("sa spi=%s key:%s" % (k[:8], k)) == "sa spi=%s key:***" % k[:8]
    assert r("id " + "z" + k) == "id z<hex:40>"
