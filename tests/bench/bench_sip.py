# `make bench`: cost of the SIP core on the MicroPython unix port (also runs on CPython).
# Parse and serialize of a ~1 KB REGISTER in microseconds and heap bytes allocated per
# parse (gc.mem_alloc delta), each next to a reference measured in the same run
# (bytes.split of the same message on CRLF) so the figures read as ratios.
import gc
import sys

try:
    from time import ticks_us, ticks_diff
except ImportError:   # CPython
    from time import perf_counter

    def ticks_us():
        return int(perf_counter() * 1000000)

    def ticks_diff(a, b):
        return a - b

if sys.implementation.name != "micropython":
    sys.path.insert(0, "firmware")
    sys.path.insert(0, "host_tools")
    import sipling_host.mpshim as _m
    _m.install()

from sipling.sip.parser import parse  # noqa: E402
from sipling.sip.message import request  # noqa: E402
from sipling.sip.framer import StreamFramer  # noqa: E402

REGISTER = (
    b"REGISTER sip:ims.example.net SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK3f8a2c91d04e7b65;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b"From: <sip:relay-7@ims.example.net>;tag=a73kszlfl\r\n"
    b"To: <sip:relay-7@ims.example.net>\r\n"
    b"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.10\r\n"
    b"CSeq: 2 REGISTER\r\n"
    b"Contact: <sip:relay-7@192.0.2.10:5062>;expires=600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-0011223344ff>\"\r\n"
    b"Authorization: Digest username=\"relay-7@ims.example.net\", realm=\"ims.example.net\", "
    b"nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"sip:ims.example.net\", "
    b"response=\"6629fae49393a05397450978507c4ef1\", algorithm=MD5, cnonce=\"0a4f113b\", "
    b"nc=00000001, qop=auth, opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"\r\n"
    b"Security-Client: ipsec-3gpp;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=3929102;spi-s=3929103;port-c=5063;port-s=5062, "
    b"digest\r\n"
    b"Security-Verify: ipsec-3gpp;q=0.1;alg=hmac-sha-1-96;ealg=aes-cbc;spi-c=5000;spi-s=5001;port-c=5066;port-s=5064\r\n"
    b"Require: sec-agree\r\n"
    b"Proxy-Require: sec-agree\r\n"
    b"Supported: sec-agree, path, gruu\r\n"
    b"Allow: INVITE, ACK, CANCEL, BYE, MESSAGE, OPTIONS, NOTIFY\r\n"
    b"Expires: 600\r\n"
    b"Content-Length: 0\r\n\r\n")


def _once(fn, n):
    gc.collect()
    t0 = ticks_us()
    for _ in range(n):
        fn()
    return ticks_diff(ticks_us(), t0) / n


def timed(fn, n, ref=None):
    # 7 rounds, each timing fn and (when given) the reference right after it: returns the
    # best time per call and the median of the per-round ratios, which other processes on
    # the machine disturb much less than either time alone.
    best = None
    ratios = []
    for _ in range(7):
        t = _once(fn, n)
        best = t if best is None or t < best else best
        if ref is not None:
            ratios.append(t / _once(ref, n))
    ratios.sort()
    return best, (ratios[3] if ratios else 1.0)


def heap(fn):
    # bytes allocated by one call (median of 5), gc.mem_alloc delta (MicroPython only)
    if not hasattr(gc, "mem_alloc"):
        return None
    out = []
    for _ in range(5):
        gc.collect()
        a = gc.mem_alloc()
        fn()
        out.append(gc.mem_alloc() - a)
    out.sort()
    return out[2]


def row(name, fn, ref, n, ref_mem):
    us, ratio = timed(fn, n, ref)
    mem = heap(fn)
    m = "%8s" % ("-" if mem is None else mem)
    r = "%6s" % ("-" if mem is None or not ref_mem else "%.1fx" % (mem / ref_mem))
    print("%-34s %9.1f us %6.1fx   %s B %s" % (name, us, ratio, m, r))


def main():
    n = 100 if sys.implementation.name == "micropython" else 1000
    msg = parse(REGISTER)
    assert msg.serialize() == REGISTER
    built = request(b"REGISTER", b"sip:ims.example.net", [(h[0], h[1]) for h in msg.headers])

    def ref():
        REGISTER.split(b"\r\n")

    def do_parse():
        parse(REGISTER)

    def do_serialize_parsed():
        msg.serialize()

    def do_serialize_built():
        built.serialize()

    def do_parse_and_use():
        m = parse(REGISTER)
        m.via_branch()
        m.cseq()
        m.from_tag()
        m.get_all("security-client")

    def do_frame():
        StreamFramer().feed(REGISTER)

    ref_mem = heap(ref)
    print("message: %d-byte REGISTER, %d headers; %s %s" % (
        len(REGISTER), len(msg.headers), sys.implementation.name,
        ".".join(str(x) for x in sys.implementation.version[:3])))
    print("%-34s %12s %7s %10s %6s" % ("operation (%d calls x 7)" % n, "time", "/ref", "heap", "/ref"))
    row("reference: bytes.split(CRLF)", ref, ref, n, ref_mem)
    row("parse", do_parse, ref, n, ref_mem)
    row("parse + branch/cseq/tag/list", do_parse_and_use, ref, n, ref_mem)
    row("serialize (parsed, unmodified)", do_serialize_parsed, ref, n, ref_mem)
    row("serialize (built message)", do_serialize_built, ref, n, ref_mem)
    row("StreamFramer.feed (whole)", do_frame, ref, n, ref_mem)
    print("time: best of 7 rounds; /ref: median per-round ratio to the reference; "
          "heap: gc.mem_alloc delta per call")

main()
