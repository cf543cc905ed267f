"""`sipling logs`: the board's log lines with time stamps, level colours and filters.

Reads the console, drops provisioning frames (never shown, never written), prefixes each
line with the laptop's clock, colours it by level, filters by level/module/text, writes it
to the terminal and/or a file, and with ``--pcap`` turns SIP ``TRACE`` lines into a pcap
(:mod:`sipling_host.pcap`). When the port goes away (cable pulled, board reset) it waits
for the port to come back and goes on.
"""
import os
import sys
import time

import serial

from sipling.provision import frame

from .errors import UserError
from .pcap import PcapWriter, parse_trace
from .serialport import open_port, port_present

HELP = "show the board's log (time stamps, colours, filters); --pcap writes its SIP traces"
LEVELS = {"DEBUG": 10, "INFO": 20, "WARN": 30, "ERROR": 40, "TRACE": 15}
_COLOURS = {"DEBUG": "\033[2m", "INFO": "", "WARN": "\033[33m", "ERROR": "\033[31;1m",
            "TRACE": "\033[36m"}
_RESET = "\033[0m"


def parse_line(line):
    """(ms, level, module, message) for a log line, (None, None, None, line) otherwise."""
    parts = line.split(" ", 3)
    if len(parts) >= 3 and parts[0].isdigit() and parts[1] in LEVELS:
        if parts[1] == "TRACE":
            return int(parts[0]), "TRACE", "sip", " ".join(parts[2:])
        if len(parts) == 4 and parts[2].endswith(":"):
            return int(parts[0]), parts[1], parts[2][:-1], parts[3]
        if len(parts) == 3 and parts[2].endswith(":"):
            return int(parts[0]), parts[1], parts[2][:-1], ""
    return None, None, None, line


def trace_summary(t):
    """One readable line for a SIP trace: direction, addresses, start line."""
    ms, direction, proto, src, dst, data = t
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    arrow = "->" if direction == "out" else "<-"
    peer = dst if direction == "out" else src
    return "%s %s:%d %s %s (%d bytes)" % (arrow, peer[0], peer[1], proto, first, len(data))


class Filter:
    def __init__(self, level="debug", modules=None, grep=None, traces=True):
        self.level = LEVELS[level.upper()]
        self.modules = set(modules or [])
        self.grep = grep
        self.traces = traces

    def keep(self, level, module, text):
        if level == "TRACE":
            if not self.traces:
                return False
        elif level is not None and LEVELS[level] < self.level:
            return False
        if self.modules and module not in self.modules:
            return False
        if self.grep and self.grep not in text:
            return False
        return True


class Relay:
    """Turns console bytes into shown lines; usable without a port (tests feed bytes)."""

    def __init__(self, out=None, logfile=None, pcap=None, flt=None, colour=False, clock=time.time):
        self.out = out
        self.logfile = logfile
        self.pcap = pcap
        self.flt = flt or Filter()
        self.colour = colour
        self.clock = clock
        self.split = frame.Splitter(max_line=1 << 17)
        self.lines = 0
        self._anchor = None     # laptop time minus device time (s), for pcap time stamps

    def _pcap_time(self, now, ms):
        """The device's own spacing of messages (its ms clock), pinned to the laptop clock;
        re-pinned when the device clock jumps back (reboot) or drifts by more than 2 s."""
        t = ms / 1000.0
        if self._anchor is None or abs(now - (self._anchor + t)) > 2.0:
            self._anchor = now - t
        return self._anchor + t

    def feed(self, data):
        for kind, body in self.split.feed(data):
            if kind == "text":
                self.line(body.decode("utf-8", "replace"))

    def line(self, text):
        now = self.clock()
        ms, level, module, msg = parse_line(text)
        shown = text
        if level == "TRACE":
            t = parse_trace(text)
            if t is None:
                return
            if self.pcap is not None:
                self.pcap.write(self._pcap_time(now, ms), t[2], t[3], t[4], t[5])
            shown = "%d TRACE %s" % (ms, trace_summary(t))
        if not self.flt.keep(level, module, text if level != "TRACE" else shown):
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + ".%03d" % int((now % 1) * 1000)
        self.lines += 1
        if self.logfile is not None:
            self.logfile.write("%s %s\n" % (stamp, shown))
            self.logfile.flush()
        if self.out is not None:
            c = _COLOURS.get(level, "") if self.colour else ""
            self.out.write("%s %s%s%s\n" % (stamp, c, shown, _RESET if c else ""))
            self.out.flush()


def add_arguments(p):
    p.add_argument("--port", required=True, help="serial port of the board")
    p.add_argument("--baud", type=int, default=115200)
    p.add_argument("--out", help="also append the lines to this file")
    p.add_argument("--pcap", help="write the SIP traces to this pcap file")
    p.add_argument("--level", default="debug", choices=("debug", "info", "warn", "error"),
                   help="lowest level shown (default %(default)s)")
    p.add_argument("--module", action="append", help="show only this module (repeat)")
    p.add_argument("--grep", help="show only lines containing this text")
    p.add_argument("--no-traces", action="store_true", help="hide SIP trace lines (still in --pcap)")
    p.add_argument("--quiet", action="store_true", help="nothing on the terminal (with --out/--pcap)")
    p.add_argument("--color", default="auto", choices=("auto", "always", "never"))
    p.add_argument("--wait", action="store_true", help="wait for the port to appear at start")
    p.add_argument("--duration", type=float, help="stop after this many seconds")


def _wait_for(port, baud, deadline, note):
    shown = False
    while deadline is None or time.monotonic() < deadline:
        if port_present(port):
            try:
                return open_port(port, baud, timeout=0.1)
            except UserError as e:
                if "permission denied" in str(e):
                    raise
        if not shown:
            note("sipling: waiting for %s (unplugged?)" % port)
            shown = True
        time.sleep(0.1)
    return None


def run(args):
    colour = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
    deadline = None if args.duration is None else time.monotonic() + args.duration

    def note(msg):
        print(msg, file=sys.stderr, flush=True)

    if args.wait:
        ser = _wait_for(args.port, args.baud, deadline, note)
        if ser is None:
            return 0
    else:
        ser = open_port(args.port, args.baud, timeout=0.1)
    # SIP traces name users and carry message bodies: readable by this user only
    logfile = os.fdopen(os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "a") if args.out else None
    pf = os.fdopen(os.open(args.pcap, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") if args.pcap else None
    relay = Relay(out=None if args.quiet else sys.stdout, logfile=logfile,
                  pcap=PcapWriter(pf) if pf else None,
                  flt=Filter(args.level, args.module, args.grep, not args.no_traces), colour=colour)
    try:
        _relay_loop(args, ser, relay, deadline, note)
    except KeyboardInterrupt:
        pass                    # ^C is how `sipling logs` is normally stopped
    finally:
        if logfile:
            logfile.close()
        if pf:
            pf.close()
    if relay.pcap is not None:
        note("sipling: %d SIP message(s) written to %s" % (relay.pcap.count, args.pcap))
        if not relay.pcap.count:
            note("sipling: no SIP traces seen; the board logs them when provisioned with --trace-sip")
    return 0


def _relay_loop(args, ser, relay, deadline, note):
    try:
        while deadline is None or time.monotonic() < deadline:
            try:
                data = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError):
                ser.close()
                note("sipling: lost %s; waiting for it to come back" % args.port)
                ser = _wait_for(args.port, args.baud, deadline, lambda m: None)
                if ser is None:
                    break
                note("sipling: %s is back" % args.port)
                relay.split = frame.Splitter(max_line=1 << 17)   # a half line is gone
                continue
            if data:
                relay.feed(data)
    finally:
        if ser is not None:
            ser.close()
