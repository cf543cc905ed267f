# The console: the board's serial line (UART/USB via sys.stdin on ESP32, stdin on the unix
# port behind a pty). Reads without blocking, splits provisioning frames from typed command
# lines (sipling.provision.frame.Splitter), hands frames to the provisioner and lines to
# the app, writes the replies. Frame bytes are never echoed.
#
# In a select.poll loop (the app's pump):
#   con = console.app_console(on_line, on_commit)   # Console + Provisioner on the config store
#   poller.register(con.inp, select.POLLIN)
#   ... if obj is con.inp and not con.pump(): poller.unregister(con.inp)   # end of input
#   log.set_sink(con.write)                          # log lines share the console
# With asyncio: con = console.start(on_line, provisioner) (a task reads the console).
#
# on_line(line: str) -> str | None: the reply text; it gets a trailing "\n" if it has none.
# Ctrl-C still interrupts: on the unix port the pty has ISIG on, on ESP32 the UART driver
# raises KeyboardInterrupt (frames never carry 0x03).
# serve_provisioning() takes frames at the REPL when no app runs (a fresh board, a config
# the app refused): `sipling provision` starts it through the raw REPL.
import os
import sys
import select

from sipling.provision import frame


def _stream(name, binary=True):
    s = getattr(sys, name)
    if binary:
        return getattr(s, "buffer", s)
    return s


class Console:
    def __init__(self, on_line=None, on_frame=None, inp=None, out=None, echo=False):
        """on_frame(body: bytes) -> reply bytes | None (Provisioner.handle_frame)."""
        self.on_line = on_line
        self.on_frame = on_frame
        self.inp = inp if inp is not None else _stream("stdin")
        self.out = out if out is not None else _stream("stdout")
        self.echo = echo
        self.split = frame.Splitter()
        self._echo_frame = False
        self._poller = None
        self.task = None

    # --- output -----------------------------------------------------------------------
    def write(self, s):
        """Write str or bytes to the console (the log sink)."""
        if isinstance(s, str):
            s = s.encode()
        try:
            self.out.write(s)
        except TypeError:  # a text-only stdout
            self.out.write(s.decode())

    # --- input ------------------------------------------------------------------------
    def feed(self, data):
        """Process console bytes: frames to on_frame, lines to on_line; writes replies."""
        if self.echo:
            self._echo(data)
        for kind, body in self.split.feed(data):
            if kind == "frame":
                if self.on_frame is not None:
                    r = self.on_frame(body)
                    if r:
                        self.write(r)
            else:
                self._line(body)

    def read_available(self, limit=512):
        """The bytes already waiting on the console (b"" at end of input), never blocking
        after the first: one byte per read, as a blocking read(n) would wait for all n."""
        src = self.inp
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(src, select.POLLIN)
        chunk = []
        while len(chunk) < limit:
            ev = self._poller.poll(0)
            if not ev or not (ev[0][1] & select.POLLIN):
                break
            c = src.read(1)
            if not c:
                break
            chunk.append(c if isinstance(c, bytes) else c.encode())
        return b"".join(chunk)

    def pump(self):
        """For a select.poll loop: call when self.inp is readable. False at end of input."""
        data = self.read_available()
        if not data:
            return False
        self.feed(data)
        return True

    def _echo(self, data):
        # echo typed bytes, but nothing of a frame line (its bytes may carry keys)
        keep = []
        in_frame = self._echo_frame
        for c in bytes(data):
            if c == 0x1E:
                in_frame = True
            elif c == 10 or c == 13:
                if not in_frame:
                    keep.append(b"\r\n")
                in_frame = False
            elif not in_frame and 32 <= c < 127:
                keep.append(bytes([c]))
        self._echo_frame = in_frame
        if keep:
            self.write(b"".join(keep))

    def _line(self, body):
        if self.on_line is None:
            return
        try:
            line = body.decode()
        except UnicodeError:
            line = None
        try:
            r = self.on_line(line) if line is not None else "error console lines are text"
        except Exception as e:
            r = "error: %s" % e
        if r:
            if not r.endswith("\n"):
                r += "\n"
            self.write(r)

    # --- the reader task --------------------------------------------------------------
    async def run(self):
        """asyncio reader task: returns at end of input (e.g. a closed pipe)."""
        import asyncio      # only for asyncio apps: a poll loop never loads it
        reader = asyncio.StreamReader(self.inp)
        while True:
            b = await reader.read(1)      # waits without blocking the loop
            if not b:
                return
            self.feed((b if isinstance(b, bytes) else b.encode()) + self.read_available())


def start(on_line, provisioner=None, echo=False):
    """Create the Console and its reader task (call inside the running asyncio loop)."""
    import asyncio
    con = Console(on_line, provisioner.handle_frame if provisioner is not None else None,
                  echo=echo)
    con.task = asyncio.create_task(con.run())
    return con


def config_path():
    """Where the device config lives: $SIPLING_CONFIG (unix port), else /sipling.json on the
    board; the simulated board's files are relative to its directory."""
    g = getattr(os, "getenv", None)
    v = g("SIPLING_CONFIG") if g else None
    if v:
        return v
    return "sipling.json" if sys.platform == "linux" else "/sipling.json"


def _store(path):
    """The config store, recovered: a transfer cut by a power loss is dropped, the old
    config stays. Returns (store, note: None or what recovery did)."""
    from sipling.shell import fs
    from sipling.provision.store import Store
    st = Store(fs, path or config_path())
    return st, st.recover()


def _provisioner(store, on_commit=None):
    import sipling
    from sipling.provision.device import Provisioner
    return Provisioner(store, on_commit=on_commit, fw=getattr(sipling, "VERSION", ""))


def app_console(on_line, on_commit=None, path=None, echo=False):
    """The console an app needs: typed lines to on_line, provisioning into the config store
    (boot recovery done here). on_commit(name) runs after a new config replaced the old one
    (reload there). The Console's .store and .boot_note (None or what recovery did) are set;
    .provisioner is created with the first provisioning frame (its code stays out of the
    heap of a board that is never re-provisioned)."""
    st, note = _store(path)
    con = Console(on_line, None, echo=echo)

    def on_frame(body):
        if con.provisioner is None:
            con.provisioner = _provisioner(st, on_commit)
        return con.provisioner.handle_frame(body)

    con.on_frame = on_frame
    con.provisioner = None
    con.store = st
    con.boot_note = note
    return con


def serve_provisioning(path=None, idle_ms=30000):
    """Answer provisioning frames on the console until BYE or idle_ms of silence.

    For the REPL (no app running). Returns the number of commits."""
    import time
    prov = _provisioner(_store(path)[0])
    con = Console(None, prov.handle_frame)
    poller = select.poll()
    poller.register(con.inp, select.POLLIN)
    last = time.ticks_ms()
    while not prov.bye:
        if poller.poll(200):
            if not con.pump():
                break
            last = time.ticks_ms()
        elif time.ticks_diff(time.ticks_ms(), last) > idle_ms:
            break
    return prov.commits
