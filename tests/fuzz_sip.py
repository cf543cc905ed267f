"""Mutation fuzzer for the SIP core (`make fuzz` runs `python tests/fuzz_sip.py N`).

Seeds are the RFC 4475 and RFC 3261 vectors plus a few built messages. Each round mutates
one seed (byte flips, SIP punctuation, folding, huge numbers, cuts, splices, repeats) and
drives it through every entry point: parse, parse_or_reply, the accessors of a parsed
message, serialize/re-parse, StreamFramer in random chunks, and the URI / name-addr / Via
parsers on header values. Any exception other than the core's SipError is a failure:
the offending input is written to tests/fuzz-crash-<n>.bin and the run exits 1.
Prints counts of accepted, refused (by status) and dropped inputs.

usage: python tests/fuzz_sip.py [N] [--seed S]
"""
import os
import random
import sys
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (os.path.join(ROOT, "firmware"), os.path.join(ROOT, "host_tools")):
    if p not in sys.path:
        sys.path.insert(0, p)

import sipling_host.mpshim as _mpshim  # noqa: E402

_mpshim.install()

from sipling.sip.message import SipError, response  # noqa: E402
from sipling.sip.parser import parse, parse_or_reply  # noqa: E402
from sipling.sip.framer import StreamFramer  # noqa: E402
from sipling.sip.uri import parse_uri, parse_name_addr, parse_via, parse_via_list  # noqa: E402

PUNCT = [b'"', b"<", b">", b";", b",", b":", b"=", b"@", b"%", b"\\", b"\r\n", b"\r\n ",
         b"\n", b"\r", b" ", b"\t", b"/", b"?", b"&", b"[", b"]", b"\x00", b"\xff", b"%0",
         b"%%", b"99999999999999999999", b"-1", b"SIP/2.0", b"z9hG4bK", b";tag=",
         b"\r\n\r\n", b"Content-Length: 5\r\n", b"l: 99999\r\n", b"v: SIP/2.0/UDP h\r\n"]


def seeds():
    out = []
    for d in ("rfc4475", "rfc3261"):
        p = os.path.join(HERE, "vectors", d)
        for n in sorted(os.listdir(p)):
            if n.endswith(".dat") or n.endswith(".sip"):
                with open(os.path.join(p, n), "rb") as f:
                    out.append(f.read())
    out.append(b"REGISTER sip:r.example.com SIP/2.0\r\n"
               b"Via: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport;received=10.0.0.1\r\n"
               b"From: \"A \\\"q\\\"\" <sips:a:pw@r.example.com:5061;transport=tcp?x=y&z=w>;tag=1\r\n"
               b"To: <sip:a@r.example.com>\r\nCall-ID: c@h\r\nCSeq: 1 REGISTER\r\n"
               b"Security-Client: ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1;spi-s=2;port-c=5;port-s=6\r\n"
               b"Contact: *\r\nContent-Length: 0\r\n\r\n")
    return out


def mutate(rng, data, pool):
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 5))):
        op = rng.randrange(9)
        n = len(b)
        i = rng.randrange(n + 1) if n else 0
        if op == 0 and n:
            b[rng.randrange(n)] = rng.randrange(256)
        elif op == 1:
            b[i:i] = rng.choice(PUNCT)
        elif op == 2 and n:
            j = min(n, i + rng.randint(1, 40))
            del b[i:j]
        elif op == 3 and n:
            j = min(n, i + rng.randint(1, 60))
            b[i:i] = b[i:j] * rng.randint(1, 4)
        elif op == 4:
            del b[i:]
        elif op == 5:
            other = rng.choice(pool)
            k = rng.randrange(len(other) + 1)
            b[i:] = other[k:]
        elif op == 6 and n:
            # replace a run of digits with a large or odd number
            j = i
            while j < n and 48 <= b[j] <= 57:
                j += 1
            b[i:j] = rng.choice([b"0", b"4294967296", b"99999999999999999999999", b"-5", b"007"])
        elif op == 7 and n:
            b[rng.randrange(n)] ^= 0x20      # flip letter case
        elif op == 8:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    return bytes(b)


def exercise(data, rng, counts):
    """Run data through every entry point; only SipError may escape the core."""
    msg, reply = parse_or_reply(data)
    if msg is None:
        if reply is None:
            counts["dropped"] += 1
        else:
            counts["refused %s" % reply[8:11].decode("latin-1")] += 1
            if not reply.startswith(b"SIP/2.0 4") and not reply.startswith(b"SIP/2.0 5"):
                raise AssertionError("error reply is no 4xx/5xx: %r" % reply[:20])
            try:
                parse(reply)           # copies the request's (maybe broken) lines
                counts["replies that parse"] += 1
            except SipError:
                pass
    else:
        counts["accepted"] += 1
        m = msg
        for h in list(m.headers):
            for fn in (m.get, m.get_all, m.header_lines):
                try:
                    fn(h[0])
                except SipError:
                    pass
        for fn in (m.vias, m.top_via, m.via_branch, m.cseq, m.call_id, m.from_tag, m.to_tag,
                   m.request_uri, m.max_forwards):
            try:
                fn()
            except SipError:
                pass
        w = m.serialize()
        try:
            m2 = parse(w)
        except SipError as e:
            raise AssertionError("parse(serialize(m)) raised %s" % e)
        if m2 != m:
            raise AssertionError("parse(serialize(m)) != m")
        if m.is_request and m.method != b"ACK":
            r = response(m, 200, "OK", to_tag="t1")
            if parse(r.serialize()) != r:
                raise AssertionError("response round trip")
    # stream framing in random chunks
    f = StreamFramer()
    try:
        i = 0
        while i < len(data):
            k = rng.randint(1, 300)
            for one in f.feed(data[i:i + k]):
                try:
                    parse(one)
                except SipError:
                    pass
            i += k
    except SipError:
        counts["framing errors"] += 1
    # the value parsers on their own
    for line in data.split(b"\r\n")[1:12]:
        value = line.partition(b":")[2]
        for fn in (parse_uri, parse_name_addr, parse_via, parse_via_list):
            try:
                fn(value.strip())
            except SipError:
                pass


class Counter(dict):
    def __missing__(self, k):
        return 0


def run(n, seed=1, report=True):
    rng = random.Random(seed)
    pool = seeds()
    counts = Counter()
    for it in range(n):
        data = mutate(rng, rng.choice(pool), pool)
        try:
            exercise(data, rng, counts)
        except SipError:
            counts["SipError from a non-core call"] += 1
        except Exception:
            path = os.path.join(HERE, "fuzz-crash-%d.bin" % it)
            with open(path, "wb") as f:
                f.write(data)
            traceback.print_exc()
            print("fuzz: foreign exception on input %d (seed %d), saved to %s" % (it, seed, path))
            return counts, False
    if report:
        total = sum(v for k, v in counts.items() if k in ("accepted", "dropped")
                    or k.startswith("refused"))
        print("fuzz: %d inputs, seed %d, no exception other than SipError" % (n, seed))
        for k in sorted(counts):
            print("  %-32s %d" % (k, counts[k]))
        print("  %-32s %d" % ("total", total))
    return counts, True


def main(argv):
    n = 100000
    seed = 1
    args = list(argv)
    if "--seed" in args:
        i = args.index("--seed")
        seed = int(args[i + 1])
        del args[i:i + 2]
    if args:
        n = int(args[0])
    _, ok = run(n, seed)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
