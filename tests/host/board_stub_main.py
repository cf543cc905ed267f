# Stand-in for firmware/main.py in the host tests of console, provisioning and logs (runs on
# the MicroPython unix port behind sipling_host.ptyboard): the real console, log, store and
# provisioner, an app reduced to a few console commands.
#   micropython -i board_stub_main.py [--beat MS] [--traces] [--asyncio]
# The default pump is a select.poll loop (as firmware/sipling/shell/loop.py runs the app);
# --asyncio runs the console as an asyncio task instead.
import sys
import asyncio
import select
import time
import binascii

from sipling import log
from sipling.shell import console, fs
from sipling.provision.store import Store
from sipling.provision.device import Provisioner

REG = (b"REGISTER sip:example.test SIP/2.0\r\n"
       b"Via: SIP/2.0/UDP 127.0.0.1:5064;branch=z9hG4bK-%d\r\n"
       b"From: <sip:door@example.test>;tag=1\r\nTo: <sip:door@example.test>\r\n"
       b"Call-ID: stub-%d@127.0.0.1\r\nCSeq: %d REGISTER\r\n"
       b"Contact: <sip:door@127.0.0.1:5064>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
OK = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5064;branch=z9hG4bK-%d\r\n"
      b"From: <sip:door@example.test>;tag=1\r\nTo: <sip:door@example.test>;tag=2\r\n"
      b"Call-ID: stub-%d@127.0.0.1\r\nCSeq: %d REGISTER\r\nContent-Length: 0\r\n\r\n")


def fp16(st):
    fp = st.fingerprint()
    return binascii.hexlify(fp).decode()[:16] if fp else "none"


def main(argv):
    beat = 0
    traces = False
    use_asyncio = False
    i = 0
    while i < len(argv):
        if argv[i] == "--beat":
            beat = int(argv[i + 1])
            i += 1
        elif argv[i] == "--traces":
            traces = True
        elif argv[i] == "--asyncio":
            use_asyncio = True
        i += 1
    log.set_clock(time.ticks_ms)
    log.set_level("debug")
    reloads = [0]
    box = {}    # the store, once made

    def fp():
        return fp16(box["st"])

    def on_commit(name):
        reloads[0] += 1
        log.info("app", "reloaded %s (%d)" % (name, reloads[0]))

    def on_line(line):
        w = line.split()
        if not w:
            return None
        if w[0] == "status":
            return "ok config %s reloads %d" % (fp(), reloads[0])
        if w[0] == "secret":
            log.info("app", "ik=00112233445566778899aabbccddeeff password=hunter2")
            return "done"
        return "unknown command: " + w[0]

    n = [0]

    def beat_once():
        n[0] += 1
        log.info("beat", "n=%d" % n[0])
        if traces:
            k = n[0]
            log.trace("out", "udp", ("127.0.0.1", 5064), ("127.0.0.1", 5060), REG % (k, k, k))
            log.trace("in", "udp", ("127.0.0.1", 5060), ("127.0.0.1", 5064), OK % (k, k, k))

    def boot(con, note):
        log.set_sink(con.write)
        if note:
            log.warn("boot", note)
        log.info("boot", "config %s" % fp())

    if not use_asyncio:
        # what an app's poll loop does: app_console() builds the store + provisioner itself
        con = console.app_console(on_line, on_commit, path="sipling.json")
        box["st"] = con.store
        note = con.boot_note
        boot(con, note)
        p = select.poll()
        p.register(con.inp, select.POLLIN)
        due = time.ticks_add(time.ticks_ms(), beat)
        while True:
            wait = max(0, time.ticks_diff(due, time.ticks_ms())) if beat else -1
            for obj, ev in p.poll(wait):
                if obj is con.inp and not con.pump():
                    return
            if beat and time.ticks_diff(time.ticks_ms(), due) >= 0:
                beat_once()
                due = time.ticks_add(due, beat)

    async def beater():
        while True:
            beat_once()
            await asyncio.sleep_ms(beat)

    async def app():
        st = Store(fs, "sipling.json")
        note = st.recover()
        box["st"] = st
        con = console.start(on_line, Provisioner(st, on_commit=on_commit, fw="stub"))
        boot(con, note)
        if beat:
            asyncio.create_task(beater())
        await con.task

    asyncio.run(app())


main(sys.argv[1:])
