# Events the board reports to its owners (button press, sensor crossing a threshold) and the
# outbox that delivers them as MESSAGEs with retries. Sans-IO: times come in as now_ms.
from micropython import const

_RETRY_FIRST_MS = const(2000)
_RETRY_MAX_MS = const(60000)
MAX_ATTEMPTS = const(6)
MAX_PENDING = const(16)


class Watcher:
    """Turns sensor readings into threshold-crossing events, with hysteresis.

    caps: {name: {"kind": "sensor", "threshold": 30, "hysteresis": 0.5}}. A crossing upward
    fires once; it re-arms when the value falls below threshold - hysteresis (and vice versa).
    """

    def __init__(self, caps):
        self.state = {}  # name -> True (above) / False (below) / None (unknown)
        self.sensors = []
        for n in sorted(caps):
            c = caps[n]
            if c.get("kind") == "sensor" and isinstance(c.get("threshold"), (int, float)):
                self.sensors.append((n, float(c["threshold"]), float(c.get("hysteresis", 0.5))))
                self.state[n] = None

    def check(self, name, value):
        """Event text when `value` of sensor `name` crossed its threshold, else None."""
        for n, thr, hyst in self.sensors:
            if n != name:
                continue
            if value is None:
                return None
            prev = self.state[n]
            if prev is None:
                self.state[n] = value > thr
                # a sensor above its threshold at start is worth telling
                return "event %s %.1f above %.1f" % (n, value, thr) if value > thr else None
            if not prev and value > thr:
                self.state[n] = True
                return "event %s %.1f above %.1f" % (n, value, thr)
            if prev and value < thr - hyst:
                self.state[n] = False
                return "event %s %.1f below %.1f" % (n, value, thr)
            return None
        return None


class Outbox:
    """Pending event deliveries: [owner_uri, text, attempts, due_ms]; bounded, never silent.

    log(level, msg) is called for every retry, give-up and overflow.
    """

    def __init__(self, log):
        self.items = []
        self.log = log
        self.delivered = 0
        self.lost = 0

    def add(self, owner, text, now_ms):
        if len(self.items) >= MAX_PENDING:
            old = self.items.pop(0)
            self.lost += 1
            self.log("error", "event to %s dropped, outbox full (%d): %s" % (old[0], MAX_PENDING, old[1]))
        self.items.append([owner, text, 0, now_ms, False])

    def due(self, now_ms):
        """Items to send now; each is marked in flight until result() is called for it."""
        out = []
        for it in self.items:
            if not it[4] and now_ms >= it[3]:
                it[4] = True
                it[2] += 1
                out.append(it)
        return out

    def result(self, item, ok, now_ms, why=""):
        if item not in self.items:
            return
        if ok:
            self.items.remove(item)
            self.delivered += 1
            return
        item[4] = False
        if item[2] >= MAX_ATTEMPTS:
            self.items.remove(item)
            self.lost += 1
            self.log("error", "event to %s given up after %d attempts (%s): %s" % (item[0], item[2], why, item[1]))
            return
        delay = _RETRY_FIRST_MS << (item[2] - 1)
        if delay > _RETRY_MAX_MS:
            delay = _RETRY_MAX_MS
        item[3] = now_ms + delay
        self.log("warn", "event to %s failed (%s), retry %d in %d ms" % (item[0], why, item[2] + 1, delay))

    def hold(self, now_ms):
        """Not registered: items in flight go back to waiting (the sender lost them)."""
        for it in self.items:
            if it[4]:
                it[4] = False
                it[3] = now_ms

    def get_timer(self):
        t = None
        for it in self.items:
            if not it[4] and (t is None or it[3] < t):
                t = it[3]
        return t
