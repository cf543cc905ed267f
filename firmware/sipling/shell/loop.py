# The pump (DESIGN.md 3): read sockets and the console, feed the app, send what it returns,
# sleep in poll() until the next timer. One select.poll over every socket and stdin.
import select

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


def _guard(what, fn, *args):
    # one bad datagram or bug must not take the board down: log it, keep serving
    try:
        return fn(*args)
    except KeyboardInterrupt:
        raise
    except Exception as e:
        log.exc("app", what, e)
        return None


def _flush(app, transport):
    # each datagram guarded on its own: one that cannot be sent must not cost the others
    for data, dst in _guard("send", app.datagrams_to_send) or ():
        _guard("send", transport.send, data, dst)


def run(app, transport, console=None):
    """Pump until the app has stopped. console: a sipling.shell.console.Console (typed lines
    to the app, provisioning frames to its provisioner) or None. Returns 0."""
    p = select.poll()
    socks = {}
    for s in transport.socks():
        p.register(s, select.POLLIN)
        socks[id(s)] = s
        fileno = getattr(s, "fileno", None)
        if fileno is not None:
            socks[fileno()] = s  # CPython's poll() reports file descriptors, MicroPython's the object
    con_in = console.inp if console is not None else None
    if con_in is not None:
        p.register(con_in, select.POLLIN)
    now = clock.now_ms()
    app.start(now)
    deadline = None
    tick = getattr(transport, "tick", None)
    try:
        while True:
            now = clock.now_ms()
            _guard("timer", app.handle_timer, now)
            if tick:
                _guard("keep-alive", tick, now)  # ESP-in-UDP NAT keep-alive (RFC 3948 4)
            _flush(app, transport)
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
                if con_in is not None and obj is con_in:
                    if _guard("console", console.pump) is False:
                        p.unregister(con_in)  # end of input (closed pipe): keep serving
                        con_in = None
                    _flush(app, transport)
                    continue
                s = socks.get(obj if isinstance(obj, int) else id(obj))
                if s is None:
                    continue
                r = _guard("receive", transport.recv, s)
                if r is not None:
                    _guard("receive", app.receive, r[0], r[1], r[2], now)
                _flush(app, transport)
    except KeyboardInterrupt:
        # a second ^C: leave now, the binding expires on its own
        log.warn("app", "interrupted during shutdown; the registration will expire by itself")
    transport.close()
    log.info("app", "stopped; sip %s" % app.ua.status())
    return 0


class EspTransport:
    """ipsec-3gpp / ipsec-man: the offer goes out plain (RFC 3329 2.3.1), everything after
    the agreement inside ESP on the four SAs (DESIGN.md 4 table) over the configured carrier
    (ESP-in-UDP, RFC 3948, or raw protocol 50). Requests leave on SA1 (our port-c -> their
    port-s), responses to the proxy's requests on SA4 (our port-s -> their port-c). Once
    protected, plain datagrams count as unprotected (the UA ignores requests among them)."""

    digest = False  # digest agreed: plain datagrams from the proxy's address are its protection

    def __init__(self, cfg, rand, carrier=None, hwm_path="sipling-seq.json"):
        import binascii
        from sipling.esp.sa import SADB
        from sipling.shell import esp_carrier
        ip = cfg.get("ipsec") or {"carrier": "udp-encap", "encap_port": 4500, "peer_encap_port": 4500,
                                  "ik": "", "ck": ""}  # ipsec-man alone: carrier defaults
        self.cfg = cfg
        self.plain = PlainTransport(cfg)
        self.db = SADB(rand)
        if carrier is None:
            if ip["carrier"] == "raw":
                carrier = esp_carrier.RawCarrier(self.db, cfg["local"]["host"])
            else:
                carrier = esp_carrier.UdpCarrier(self.db, cfg["local"]["host"], ip["encap_port"])
        self.carrier = carrier
        self.carrier.set_peer(cfg["proxy"]["host"], ip["peer_encap_port"])
        self._ik = binascii.unhexlify(ip["ik"])
        self._ck = binascii.unhexlify(ip["ck"])
        self.pair = None
        self.hwm_path = hwm_path
        self.send_errors = 0
        self.local = cfg["local"]["host"]
        self.proxy = self.plain.proxy

    def agreed(self, ag, now=0):
        """SecAgree on_agreed hook: install the SAs before the first protected byte."""
        if ag.mechanism == b"ipsec-man":
            return self._manual(now)
        if ag.mechanism != b"ipsec-3gpp":
            self.digest = ag.mechanism == b"digest"
            return
        self.drop(ag)
        u, p = ag.local, ag.peer
        self.pair = self.db.install_3gpp(u["spi_c"], u["spi_s"], u["port_c"], u["port_s"],
                                         p["spi_c"], p["spi_s"], p["port_c"], p["port_s"],
                                         ag.alg.decode(), ag.ealg.decode(), self._ik, self._ck, now)
        log.info("esp", "installed SAs %s" % ag.describe())

    def _manual(self, now):
        # ipsec-man: the provisioned four-SA set as it is (DESIGN.md 4); sequence numbers
        # come from a persisted high-water mark so they never repeat across reboots
        import binascii
        m = self.cfg["ipsec_man"]
        self.drop()
        conf = {"our_spi_c": m["spi_uc"], "our_spi_s": m["spi_us"], "our_port_c": m["port_uc"],
                "our_port_s": m["port_us"], "their_spi_c": m["spi_pc"], "their_spi_s": m["spi_ps"],
                "their_port_c": m["port_pc"], "their_port_s": m["port_ps"], "alg": m["alg"],
                "ealg": m["ealg"], "ik": binascii.unhexlify(m["ik"]), "ck": binascii.unhexlify(m["ck"])}
        path = self.hwm_path
        # inbound: the replay-window top, stored rounded up ("in-<spi>", esp/replay.py
        # reserve) so a packet accepted before a reboot is refused after it (RFC 4303 3.4.3)
        self.pair = self.db.install_manual(conf, lambda spi: _hwm_read(path, spi),
                                           lambda spi, v: _hwm_write(path, spi, v), now,
                                           rx_top=lambda spi: _hwm_read(path, "in-%d" % spi),
                                           rx_persist=lambda spi, v: _hwm_write(path, "in-%d" % spi, v))
        log.info("esp", "installed provisioned ipsec-man SAs spi %d/%d/%d/%d"
                 % (m["spi_uc"], m["spi_us"], m["spi_pc"], m["spi_ps"]))

    def drop(self, ag=None):
        self.digest = False
        if self.pair is not None:
            self.db.remove_pair(self.pair)
            self.pair = None
            log.info("esp", "SAs removed")

    def tick(self, now):
        if self.pair is not None:
            self.carrier.poll(now)

    def socks(self):
        return self.plain.socks() + (self.carrier.sock,)

    def send(self, data, dst):
        pr = self.pair
        if pr is None:
            return self.plain.send(data, dst)
        sa = pr.out_s if data[:4] == b"SIP/" else pr.out_c
        try:
            self.carrier.send_udp(sa, self.local, dst[0], sa.sport, sa.dport, data)
        except Exception as e:
            # OSError from the socket; ValueError/EspError for a datagram too large for the
            # SA buffer; SeqExhausted: drop this one datagram, keep serving
            self.send_errors += 1
            log.warn("esp", "send of %d bytes to %s:%d dropped: %s" % (len(data), dst[0], sa.dport, e))
            return
        log.trace("out", "udp", (self.local, sa.sport), (dst[0], sa.dport), data)

    def recv(self, sock):
        if sock is self.carrier.sock:
            r = self.carrier.receive(0)
            if r is None:
                return None
            sa, sport, dport, payload = r
            data = bytes(payload)
            src = (self.proxy[0], sport)
            log.trace("in", "udp", src, (self.local, dport), data)
            # the UA checks the source address only: an authenticated packet is the proxy's
            return data, self.proxy, True
        r = self.plain.recv(sock)
        if r is None:
            return None
        # plain UDP from the proxy's address counts as protected only under an agreed digest
        # mechanism; with no SAs (before any agreement, or after a drop) it is plain (RFC 3329 2.3.1)
        return r[0], r[1], self.digest and r[2]

    def close(self):
        self.plain.close()
        self.carrier.close()


def _hwm_all(path):
    # ipsec-man sequence high-water marks, {spi: value}; one write per block of numbers
    import json
    try:
        with open(path) as f:
            d = json.loads(f.read())
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _hwm_read(path, spi):
    v = _hwm_all(path).get(str(spi), 0)
    return v if isinstance(v, int) and v >= 0 else 0


def _hwm_write(path, spi, value):
    import json
    import os
    d = _hwm_all(path)
    d[str(spi)] = value
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(json.dumps(d))
    os.rename(tmp, path)  # atomic on littlefs and POSIX: the old mark or the new one
