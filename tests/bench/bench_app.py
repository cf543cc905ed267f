# Memory of the whole device app (UA + sec-agree digest + control + events), registered and
# serving 1000 remote-control commands, on the MicroPython unix port.
#   micropython tests/bench/bench_app.py          -> table: heap after warm-up and after 1000
#                                                    commands, and the smallest -X heapsize
#                                                    (KiB) that runs the whole workload
#   micropython -X heapsize=48K bench_app.py run  -> the workload alone (exit 0 = it fitted)
#   micropython bench_app.py data 24              -> code loaded, then only 24 KiB of heap left
#                                                    free for the app's data (frozen code case)
# Each command is a MESSAGE from the owner through the (scripted) proxy: the device answers
# 200, runs the command and sends the result as a new MESSAGE, which the proxy answers 200.
import gc
import sys

COMMANDS = 1000
WARMUP = 100


def workload(report, leave_kib=None):
    gc.collect()
    m0 = gc.mem_alloc()
    from sipling import config
    from sipling.app import App
    from sipling.sip import message, parser
    # modules the app imports lazily count as code too
    from sipling.secagree import client  # noqa: F401
    from sipling.sip import digest  # noqa: F401
    from sipling.control import commands  # noqa: F401
    gc.collect()
    code = gc.mem_alloc() - m0
    blocker = None
    if leave_kib is not None:
        # code is in place (as frozen code in flash would be); fence off the rest of the
        # heap so that only leave_kib KiB are free for the app's own data from here on
        # (fill every hole, then give back leave_kib KiB of the 1 KiB blocks taken last,
        # which the allocator placed next to each other)
        blocker = [None] * 4096
        big = [0] * 4096
        nb = 0
        n = 0
        for size in (1024, 16):
            while n < len(blocker):
                try:
                    blocker[n] = bytearray(size)
                except MemoryError:
                    break
                if size == 1024:
                    big[nb] = n
                    nb += 1
                n += 1
        for k in range(nb - leave_kib, nb):  # no slice or append: the heap is full here
            blocker[big[k]] = None
        gc.collect()

    cfg, problems = config.validate({
        "version": 1, "board": "sim",
        "identity": {"aor": "sip:door@example.test", "password": "s3cret"},
        "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
        "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
        "secagree": {"mechanisms": ["digest"]}, "owners": ["sip:alice@example.test"]})
    assert not problems

    class Board:
        name = "sim"
        caps = {"relay": {"kind": "actuator"}, "led": {"kind": "actuator"},
                "button": {"kind": "button"}, "temperature": {"kind": "sensor", "threshold": 30}}
        values = {"relay": False, "led": False, "button": False, "temperature": 21.5}

        def read(self, n):
            return self.values[n]

        def write(self, n, on):
            self.values[n] = on

        def poll(self, now):
            return ()

    n = [0]

    def rand(k):
        n[0] += 1
        return bytes([(n[0] * 13 + i) & 255 for i in range(k)])

    app = App(cfg, Board(), rand)
    proxy = ("127.0.0.1", 5060)

    def reply_all(now, status=200, hdrs=()):
        for data, dst in app.datagrams_to_send():
            if data[:4] == b"SIP/":
                continue
            req = parser.parse(data)
            r = message.response(req, status, b"OK", hdrs, to_tag=b"p1").serialize()
            app.receive(r, proxy, True, now)

    app.start(0)
    reply_all(0, 494, ((b"Security-Server", b"digest;q=0.2;d-alg=md5;d-qop=auth"),
                       (b"WWW-Authenticate", b'Digest realm="example.test", nonce="abc", qop="auth"')))
    reply_all(0)
    assert app.ua.registered()
    cmds = (b"status", b"set relay on", b"get temperature", b"set relay off", b"help")
    tmpl = (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK%d\r\n"
            b"From: <sip:alice@example.test>;tag=a1\r\nTo: <sip:door@example.test>\r\n"
            b"Call-ID: c%d@example.test\r\nCSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\n"
            b"Content-Length: %d\r\n\r\n%s")
    warm = 0
    now = 0
    for i in range(COMMANDS):
        now += 50
        body = cmds[i % len(cmds)]
        app.receive(tmpl % (i, i, len(body), body), proxy, True, now)
        reply_all(now)
        app.handle_timer(now)
        if i + 1 == WARMUP:
            gc.collect()
            warm = gc.mem_alloc()
    gc.collect()
    end = gc.mem_alloc()
    assert app.ua.counters["commands"] == COMMANDS, app.ua.counters
    assert app.board.values["relay"] is False
    if report:
        return code, warm - m0 - code, end - m0 - code
    del blocker
    return None


def _bisect(lo, hi, cmd):
    # smallest value in (lo, hi] for which cmd % value exits 0; None if hi fails
    import os
    if os.system(cmd % hi) != 0:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if os.system(cmd % mid) == 0:
            hi = mid
        else:
            lo = mid
    return hi


def smallest_heap():
    return _bisect(16, 512, "%s -X heapsize=%%dK %s run >/dev/null 2>&1" % (sys.executable, __file__))


def smallest_data():
    return _bisect(1, 128, "%s -X heapsize=512K %s data %%d >/dev/null 2>&1" % (sys.executable, __file__))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "run":
        workload(False)
        return
    if len(sys.argv) > 2 and sys.argv[1] == "data":
        workload(False, int(sys.argv[2]))
        return
    code, warm, end = workload(True)
    print("device app, %d commands (digest sec-agree, scripted proxy), 64-bit unix port" % COMMANDS)
    print("  module code loaded into the heap (.py/.mpy; frozen on the board): %6d bytes" % code)
    print("  live data after %4d commands (app state, caches):               %6d bytes" % (WARMUP, warm))
    print("  live data after %4d commands:                                   %6d bytes" % (COMMANDS, end))
    print("  growth after warm-up:                                            %6d bytes" % (end - warm))
    d = smallest_data()
    print("  smallest heap left free after the code is loaded that serves all %d (the board's case,"
          % COMMANDS)
    print("  code frozen in flash): %s" % (("%d KiB (goal 48, limit 64)" % d) if d else "over 128 KiB"))
    k = smallest_heap()
    print("  smallest -X heapsize with the code loaded into the heap too: %s"
          % (("%d KiB" % k) if k else "over 512 KiB"))


main()
