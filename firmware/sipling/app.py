# The device application: wires the cores (UA + sec-agree, control, events) to the board and
# the log. Still sans-IO itself: shell/loop.py feeds it datagrams, console lines and time.
import sys

from sipling import log
from sipling.control import commands, events, owners
from sipling.sip import ua as _ua
from sipling.sip.uac import SecAgree

CONSOLE_HELP = "console: status | press <button> | set <sensor> <value> | do <command> | help | quit"


def unload(name):
    """Forget a module needed only once (config validation at start) so that its code and
    tables leave the heap at the next gc.collect(); a later import loads it again. Its
    names stay interned (MicroPython never frees qstrs), so this returns most, not all."""
    m = sys.modules.pop(name, None)
    pkg, _, leaf = name.rpartition(".")
    parent = sys.modules.get(pkg)
    if m is not None and parent is not None and getattr(parent, leaf, None) is m:
        delattr(parent, leaf)


def _b(x):
    return x if isinstance(x, bytes) else x.encode()


class App:
    """cfg: validated config; board: shell.board.Board (or anything with caps/read/write/poll);
    rand(n) -> random bytes; hooks on_agreed/on_drop let the transport install protection."""

    def __init__(self, cfg, board, rand, t1=500, keepalive_ms=30000, on_agreed=None, on_drop=None):
        self.cfg = cfg
        self.board = board
        self.owners = owners.Owners(cfg["owners"])
        ctl = cfg.get("control") or {}
        self.trust_from = bool(ctl.get("trust_from"))
        self.watcher = events.Watcher(board.caps)
        self.outbox = events.Outbox(lambda lvl, m: self._log(lvl, "event", m))
        self.sa = SecAgree(cfg, rand, lambda lvl, m: self._log(lvl, "secagree", m), on_agreed, on_drop)
        self.ua = _ua.UA(cfg, self.sa, self, rand, lambda lvl, m: self._log(lvl, "ua", m), t1, keepalive_ms)
        self.ua.on_state = self._state
        self.stopping = False

    def _log(self, level, module, msg):
        getattr(log, level)(module, msg)

    def _state(self, name, detail):
        log.info("ua", "state %s%s" % (name, (": " + detail) if detail else ""))

    # --- the control interface the UA calls -------------------------------------------
    def authorize(self, msg, trusted):
        k, src = self.owners.identity(msg, trusted, self.trust_from)
        if k is None and src == "none":
            return False, "sender without an asserted identity (no P-Asserted-Identity from the edge)"
        return self.owners.allowed(k), "%s (%s)" % (k or "unknown", src)

    def run(self, msg):
        return commands.execute(self.board, msg.body, msg.get("Content-Type"), self._status_extra)

    def _status_extra(self):
        return [("sip", self.ua.status().replace(" ", "_"))]

    # --- lifecycle --------------------------------------------------------------------
    def start(self, now):
        log.info("app", "board %s, identity %s, proxy %s:%d, mechanisms %s" % (
            self.board.name, self.cfg["identity"]["aor"], self.cfg["proxy"]["host"],
            self.cfg["proxy"]["port"], ",".join(self.cfg["secagree"]["mechanisms"])))
        if self.trust_from:
            log.warn("app", "control.trust_from is on (lab only): the From header counts as an owner's "
                     "identity, and anyone who reaches the proxy can claim it")
        self.ua.start(now)

    def stop(self, now):
        self.stopping = True
        log.info("app", "shutting down: de-registering")
        self.ua.stop(now)

    def stopped(self):
        return self.ua.state == _ua.STOPPED

    def receive(self, data, src, protected, now):
        self.ua.receive(data, src, protected, now)

    def handle_timer(self, now):
        self.ua.handle_timer(now)
        self._board_events(now)
        self._deliver(now)

    def get_timer(self):
        t = self.ua.get_timer()
        o = self.outbox.get_timer() if self.ua.registered() else None
        if o is not None and (t is None or o < t):
            t = o
        return t

    def datagrams_to_send(self):
        return self.ua.datagrams_to_send()

    # --- events to owners ---------------------------------------------------------------
    def _board_events(self, now):
        for kind, name, value in self.board.poll(now):
            if kind == "button":
                text = "event %s pressed" % name
            else:
                text = self.watcher.check(name, value)
            if text:
                log.info("event", "%s -> %d owner(s)" % (text, len(self.owners.uris)))
                for o in self.owners.uris:
                    self.outbox.add(o, text, now)

    def _deliver(self, now):
        if not self.ua.registered():
            return
        for it in self.outbox.due(now):
            def done(ok, why, t, it=it):
                if ok:
                    log.info("event", "delivered to %s: %s" % (it[0], it[1]))
                self.outbox.result(it, ok, t, why)
            self.ua.send_message(_b(it[0]), _b(it[1]), b"text/plain", now, done)

    # --- console (the simulated board's stdin, the board's UART) ----------------------
    def console(self, line, now):
        """One console line -> reply text (no secrets in it)."""
        w = line.strip().split()
        if not w:
            return ""
        try:
            if w[0] == "status" and len(w) == 1:
                vals = " ".join("%s=%s" % (n, commands._fmt(self.board.read(n))) for n in sorted(self.board.caps))
                return "status: sip %s; %s; events delivered %d lost %d pending %d" % (
                    self.ua.status(), vals, self.outbox.delivered, self.outbox.lost, len(self.outbox.items))
            if w[0] == "press" and len(w) == 2:
                self.board.press(w[1])
                return "ok pressed %s" % w[1]
            if w[0] == "set" and len(w) == 3 and self.board.caps.get(w[1], {}).get("kind") == "sensor":
                self.board.set_value(w[1], float(w[2]))
                return "ok %s=%s" % (w[1], w[2])
            if w[0] == "do" and len(w) > 1:
                return commands.execute(self.board, " ".join(w[1:]).encode())[0].decode()
            if w[0] == "help":
                return CONSOLE_HELP + " | counters"
            if w[0] == "counters":
                return "counters: " + " ".join("%s=%d" % kv for kv in sorted(self.ua.counters.items()))
            if w[0] == "quit":
                self.stop(now)
                return "ok stopping"
        except (ValueError, Exception) as e:
            return "error %s" % e
        return "error unknown console command; " + CONSOLE_HELP
