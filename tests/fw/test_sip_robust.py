# Mutated RFC vectors on both interpreters (MicroPython's bytes/int behave a little
# differently from CPython's): nothing but SipError may escape parse, parse_or_reply,
# the accessors and the stream framer. A small deterministic generator stands in for
# `random` so the same inputs run everywhere; the long run is tests/fuzz_sip.py.
from util import listdir, vector

from sipling.sip.message import SipError
from sipling.sip.parser import parse, parse_or_reply
from sipling.sip.framer import StreamFramer

BITS = [b'"', b"<", b">", b";", b",", b":", b"=", b"@", b"%", b"\\", b"\r\n", b"\r\n ", b"\n",
        b"\r", b" ", b"\t", b"/", b"?", b"&", b"[", b"]", b"\x00", b"\xff", b"\xb2", b"%0",
        b"99999999999999999999", b"-1", b"\xd9\xa3", b"SIP/2.0", b"\r\n\r\n", b"0x1f", b"1_0"]


class Lcg:
    def __init__(self, seed):
        self.s = seed

    def below(self, n):
        self.s = (self.s * 1103515245 + 12345) & 0x7FFFFFFF
        return (self.s >> 8) % n if n > 0 else 0


def _mutate(rng, data):
    for _ in range(1 + rng.below(3)):
        n = len(data)
        i = rng.below(n + 1)
        op = rng.below(5)
        if op == 0:
            data = data[:i] + BITS[rng.below(len(BITS))] + data[i:]
        elif op == 1:
            data = data[:i] + data[i + 1 + rng.below(30):]
        elif op == 2 and n:
            data = data[:i] + bytes([rng.below(256)]) + data[i + 1:]
        elif op == 3:
            data = data[:i]
        else:
            data = data[:i] + data[i:i + 40] + data[i:]
    return data


def _exercise(data):
    m, reply = parse_or_reply(data)
    if m is not None:
        for h in m.headers:
            try:
                m.get_all(h[0])
            except SipError:
                pass
        for fn in (m.vias, m.cseq, m.from_tag, m.to_tag, m.request_uri, m.max_forwards):
            try:
                fn()
            except SipError:
                pass
        assert parse(m.serialize()) == m
    else:
        assert reply is None or reply[:9] in (b"SIP/2.0 4", b"SIP/2.0 5")
    f = StreamFramer()
    try:
        for i in range(0, len(data), 50):
            f.feed(data[i:i + 50])
    except SipError:
        pass


def test_mutated_vectors_only_sip_error():
    seeds = [vector("rfc4475/" + n) for n in listdir("rfc4475") if n.endswith(".dat")]
    seeds += [vector("rfc3261/" + n) for n in listdir("rfc3261") if n.endswith(".sip")]
    rng = Lcg(4475)
    for k in range(2000):
        data = _mutate(rng, seeds[k % len(seeds)])
        try:
            _exercise(data)
        except SipError:
            raise
        except Exception as e:
            raise AssertionError("input %d: %r raised %r" % (k, data[:80], e))


def test_odd_digits_are_not_numbers():
    # CPython's int() takes "1_0", " 7" and Unicode digits; the wire grammar does not
    base = (b"OPTIONS sip:a@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\n"
            b"To: <sip:a@h>\r\nCall-ID: c\r\nCSeq: %s OPTIONS\r\nContent-Length: %s\r\n\r\n")
    for cseq, cl in ((b"1_0", b"0"), (b"+1", b"0"), (b"1", b"1_0"), (b"1", b"+0"), (b"1", b"0x0"),
                     (b"\xd9\xa3", b"0"), (b"1", b"\xd9\xa3")):
        try:
            parse(base % (cseq, cl))
            assert False, (cseq, cl)
        except SipError as e:
            assert e.status == 400, (cseq, cl)
