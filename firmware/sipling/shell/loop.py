# The pump (DESIGN.md 3): read sockets and the console, feed the app, send what it returns,
# sleep in poll() until the next timer. One select.poll over every socket and stdin.
import select
import sys

from sipling import log
from sipling.shell import clock, net

_MAX_SLEEP_MS = 1000   # wake at least once a second (board sampling, button IRQ flags)
_STOP_GRACE_MS = 3000  # de-registration gets this long on shutdown


class PlainTransport:
    """Plain UDP on our two ports. Requests leave from port-c; anything arriving from the
    first-hop proxy's address counts as 'protected' for the digest mechanism. The ESP
    transport (ipsec) has the same shape: socks(), send(data, dst), recv(sock)."""

    def __init__(self, cfg):
        loc = cfg["local"]
        self.proxy = (cfg["proxy"]["host"], cfg["proxy"]["port"])
        self.sock_c = net.udp_socket(loc["host"], loc["port_c"])
        self.sock_s = net.udp_socket(loc["host"], loc["port_s"])
        self.local = loc["host"]
        self.ports = {id(self.sock_c): loc["port_c"], id(self.sock_s): loc["port_s"]}
        self._dst = {}

    def socks(self):
        return (self.sock_c, self.sock_s)

    def send(self, data, dst):
        a = self._dst.get(dst)
        if a is None:
            a = self._dst[dst] = net.sockaddr(dst[0], dst[1])
        try:
            self.sock_c.sendto(data, a)
        except OSError as e:
            log.warn("net", "send to %s:%d failed: %s" % (dst[0], dst[1], e))
            return
        log.trace("out", "udp", (self.local, self.ports[id(self.sock_c)]), dst, data)

    def recv(self, sock):
        """(data, (ip, port), protected) or None."""
        try:
            data, addr = sock.recvfrom(4096)
        except OSError:
            return None  # e.g. ICMP port unreachable reported on the socket
        src = net.peer(addr)
        log.trace("in", "udp", src, (self.local, self.ports[id(sock)]), data)
        return data, src, src == self.proxy

    def close(self):
        for s in self.socks():
            s.close()


def run(app, transport, console=True):
    """Pump until the app has stopped. Returns 0."""
    p = select.poll()
    socks = {}
    for s in transport.socks():
        p.register(s, select.POLLIN)
        socks[id(s)] = s
    stdin = sys.stdin if console else None
    if stdin is not None:
        p.register(stdin, select.POLLIN)
    now = clock.now_ms()
    app.start(now)
    deadline = None
    try:
        while True:
            now = clock.now_ms()
            app.handle_timer(now)
            for data, dst in app.datagrams_to_send():
                transport.send(data, dst)
            if app.stopping:
                if deadline is None:
                    deadline = now + _STOP_GRACE_MS
                if app.stopped() or now >= deadline:
                    break
            t = app.get_timer()
            wait = _MAX_SLEEP_MS if t is None else t - now
            if wait < 0:
                wait = 0
            elif wait > _MAX_SLEEP_MS:
                wait = _MAX_SLEEP_MS
            try:
                ready = p.poll(wait)
            except KeyboardInterrupt:
                app.stop(clock.now_ms())
                continue
            for obj, ev in ready:
                now = clock.now_ms()
                if stdin is not None and obj is stdin:
                    line = stdin.readline()
                    if not line:  # EOF: no more console, keep serving
                        p.unregister(stdin)
                        stdin = None
                        continue
                    reply = app.console(line, now)
                    if reply:
                        print(reply)
                    continue
                s = socks.get(id(obj))
                if s is None:
                    continue
                r = transport.recv(s)
                if r is not None:
                    app.receive(r[0], r[1], r[2], now)
                for data, dst in app.datagrams_to_send():
                    transport.send(data, dst)
    except KeyboardInterrupt:
        # a second ^C: leave now, the binding expires on its own
        log.warn("app", "interrupted during shutdown; the registration will expire by itself")
    transport.close()
    log.info("app", "stopped (%s)" % app.ua.status())
    return 0
