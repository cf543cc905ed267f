"""Sockets, clock, signals and logs around :class:`sipling_host.edge_core.Edge` (asyncio).

The only part of `sipling edge` that does I/O: three UDP sockets (plain SIP from devices,
ESP-in-UDP, plain SIP to/from the home proxy), an optional raw ESP socket (IP protocol 50,
root only), a timer, a bundle directory watch (every second and on SIGHUP) and a status
dump on SIGUSR1.
"""
import asyncio
import errno
import os
import signal
import socket
import sys
import time

from .edge_bundle import BundleStore
from .edge_core import Edge
from .edge_esp import EdgeEsp
from .errors import UserError

_RESCAN_MS = 1000
_LEVELS = {"debug": 0, "info": 1, "warn": 2, "error": 3}


class Logger:
    """`<ms> <level> edge[<device>]: <message>` lines (the device's log format)."""

    def __init__(self, stream=None, level="info", t0=None):
        self.stream = stream or sys.stderr
        self.level = _LEVELS.get(level, 1)
        self.t0 = t0 if t0 is not None else time.monotonic()

    def __call__(self, level, device, text):
        if _LEVELS.get(level, 1) < self.level:
            return
        ms = int((time.monotonic() - self.t0) * 1000)
        who = "edge[%s]" % device if device else "edge"
        self.stream.write("%d %s %s: %s\n" % (ms, level, who, text))
        self.stream.flush()


def _bind_udp(host, port, what):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
    except OSError as e:
        s.close()
        if e.errno == errno.EADDRINUSE:
            raise UserError("%s port %s:%d is taken by another program; stop it or choose "
                            "another with the option shown in `sipling edge --help`" % (what, host, port)) from None
        raise UserError("cannot open %s port %s:%d (%s)" % (what, host, port, e.strerror)) from None
    s.setblocking(False)
    return s


class EdgeShell:
    def __init__(self, cfg, bundle_dir, state_dir=None, raw=False, log=None):
        self.cfg = cfg
        self.log = log or Logger()
        self.t0 = time.monotonic()
        self.store = BundleStore(bundle_dir, lambda line: self.log("warn", None, line))
        self.esp = EdgeEsp(os.urandom, state_dir, self.now_ms)
        self.edge = Edge(cfg, self.store, self.esp, self.log, os.urandom)
        self.socks = {}
        self.raw = raw
        self._wake = None

    def now_ms(self):
        return int((time.monotonic() - self.t0) * 1000)

    def open(self):
        c = self.cfg
        try:
            self.socks["plain"] = _bind_udp(c.host, c.sip_port, "SIP (devices)")
            self.socks["esp"] = _bind_udp(c.host, c.encap_port, "ESP-in-UDP")
            self.socks["inner"] = _bind_udp(c.host, c.inner_port, "SIP (to the proxy)")
            if self.raw:
                try:
                    r = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
                except PermissionError:
                    raise UserError("raw ESP needs root (CAP_NET_RAW); run without --raw to use ESP-in-UDP") from None
                r.setblocking(False)
                self.socks["raw"] = r
        except UserError:
            self.close()
            raise

    def close(self):
        for s in self.socks.values():
            s.close()
        self.socks = {}

    def _flush(self):
        for kind, data, addr in self.edge.datagrams_to_send():
            sock = self.socks.get(kind)
            if sock is None:
                continue
            try:
                sock.sendto(data, (addr[0], 0) if kind == "raw" else addr)
            except OSError as e:
                self.log("warn", None, "send to %s:%d failed (%s)" % (addr[0], addr[1], e.strerror))

    def _readable(self, kind):
        sock = self.socks[kind]
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break  # e.g. ICMP port unreachable reported on a UDP socket
            try:
                self._dispatch(kind, data, addr)
            except Exception as e:  # never let one datagram stop the edge
                self.log("error", None, "internal error on a %s datagram from %s:%d: %s: %s"
                         % (kind, addr[0], addr[1], e.__class__.__name__, e))
        self._flush()
        if self._wake is not None:
            self._wake.set()

    def _dispatch(self, kind, data, addr):
        now = self.now_ms()
        if kind == "plain":
            self.edge.receive_plain(data, addr, now)
        elif kind == "esp":
            self.edge.receive_esp(data, addr, now)
        elif kind == "raw":
            # a raw socket sees every protocol-50 packet of the host, ours included
            if addr[0] != self.cfg.host and data:
                ihl = (data[0] & 0x0F) * 4
                self.edge.receive_esp(data[ihl:], (addr[0], 0), now, via="raw")
        else:
            self.edge.receive_inner(data, addr, now)

    def status(self):
        lines = self.edge.status_lines(self.now_ms())
        if not lines:
            self.log("info", None, "status: no device bundles loaded from %s" % self.store.path)
        for line in lines:
            self.log("info", None, "status " + line)
        if self.edge.drops or self.esp.drops:
            d = dict(self.edge.drops)
            for k, v in self.esp.drops.items():
                d["esp:" + k] = v
            self.log("info", None, "status drops (all devices): " + " ".join("%s=%d" % kv for kv in sorted(d.items())))

    async def serve(self, stop):
        """Run until the asyncio.Event `stop` is set."""
        loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for kind, sock in self.socks.items():
            loop.add_reader(sock.fileno(), self._readable, kind)
        force = [False]

        def hup():
            force[0] = True
            self._wake.set()
        handlers = []
        for sig, fn in ((signal.SIGHUP, hup), (signal.SIGUSR1, self.status)):
            try:
                loop.add_signal_handler(sig, fn)
                handlers.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        c = self.cfg
        self.log("info", None, "listening: devices sip %s:%d, ESP-in-UDP %s:%d%s; proxy %s:%d from %s:%d; %s"
                 % (c.host, c.sip_port, c.host, c.encap_port, ", raw ESP" if self.raw else "",
                    c.proxy[0], c.proxy[1], c.host, c.inner_port,
                    "401 + Security-Server" if c.challenge == "401" else "494 + Security-Server"))
        self.edge.reload(self.now_ms(), force=True)
        if not self.edge.sessions:
            self.log("warn", None, "no device bundles in %s yet (watching it)" % self.store.path)
        next_scan = self.now_ms() + _RESCAN_MS
        try:
            while not stop.is_set():
                now = self.now_ms()
                if force[0] or now >= next_scan:
                    if force[0]:
                        self.log("info", None, "SIGHUP: reloading bundles")
                    self.edge.reload(now, force=force[0])
                    force[0] = False
                    next_scan = now + _RESCAN_MS
                t = self.edge.get_timer()
                if t is not None and t <= now:
                    self.edge.handle_timer(now)
                    self._flush()
                    continue
                wait = next_scan - now if t is None else min(t, next_scan) - now
                self._wake.clear()
                stop_task = asyncio.ensure_future(stop.wait())
                wake_task = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait([stop_task, wake_task], timeout=max(wait, 1) / 1000,
                                   return_when=asyncio.FIRST_COMPLETED)
                stop_task.cancel()
                wake_task.cancel()
        finally:
            for kind, sock in self.socks.items():
                loop.remove_reader(sock.fileno())
            for sig in handlers:
                loop.remove_signal_handler(sig)
            self.status()
            self.log("info", None, "stopped")


def run_forever(shell):
    """Open the sockets and serve until SIGINT/SIGTERM."""
    shell.open()

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await shell.serve(stop)
    try:
        asyncio.run(main())
    finally:
        shell.close()
