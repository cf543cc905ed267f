# The console: the board's serial line (UART/USB via sys.stdin on ESP32, stdin on the unix
# port behind a pty). Reads without blocking the asyncio loop, splits provisioning frames
# from typed command lines (sipling.provision.frame.Splitter), hands frames to the
# provisioner and lines to the app, writes the replies. Frame bytes are never echoed.
#
#   con = console.start(on_line, provisioner)      # inside asyncio; returns the Console
#   log.set_sink(con.write)                        # log lines share the console
#
# on_line(line: str) -> str | None (the reply text, may be a coroutine); a reply gets a
# trailing "\n" if it has none. Ctrl-C still interrupts: on the unix port the pty has
# ISIG on, on ESP32 the UART driver raises KeyboardInterrupt (frames never carry 0x03).
import sys
import asyncio
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

    # --- input (sans-IO part, driven by run() or by tests) ----------------------------
    async def feed(self, data):
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
                await self._line(body)

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

    async def _line(self, body):
        if self.on_line is None:
            return
        try:
            line = body.decode()
        except Exception:
            return
        try:
            r = self.on_line(line)
            if r is not None and hasattr(r, "send"):
                r = await r
        except Exception as e:
            r = "error: %s" % e
        if r:
            if not r.endswith("\n"):
                r += "\n"
            self.write(r)

    # --- the reader task --------------------------------------------------------------
    async def run(self):
        """Read the console forever (returns at end of input, e.g. a closed pipe)."""
        src = self.inp
        poller = select.poll()
        poller.register(src, select.POLLIN)
        reader = asyncio.StreamReader(src)
        while True:
            b = await reader.read(1)
            if not b:
                return
            chunk = [b]
            # drain what is already there without yielding (one byte per read: a
            # blocking stream's read(n) would wait for all n)
            while len(chunk) < 512:
                ev = poller.poll(0)
                if not ev or not (ev[0][1] & select.POLLIN):
                    break
                c = src.read(1)
                if not c:
                    break
                chunk.append(c)
            data = b"".join(x if isinstance(x, bytes) else x.encode() for x in chunk)
            await self.feed(data)


def start(on_line, provisioner=None, echo=False):
    """Create the Console and its reader task (call inside the running asyncio loop)."""
    con = Console(on_line, provisioner.handle_frame if provisioner is not None else None,
                  echo=echo)
    con.task = asyncio.create_task(con.run())
    return con
