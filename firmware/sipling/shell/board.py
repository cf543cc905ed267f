# Board drivers from boards/<name>/board.json: actuators (relay, LED), buttons, sensors.
# The `sim` board (chip "unix" or driver "sim") keeps every pin in memory; the console sets
# them (press(), set_value()). On ESP32 the pins go through machine.Pin / ADC.
#   caps: {name: {"kind": "actuator"|"button"|"sensor", "pin": n, "driver": ..., ...}}
import json

_DEBOUNCE_MS = 50
_SAMPLE_MS = 2000


class BoardError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def load_desc(path):
    """The board description dict, or BoardError with one line saying what is wrong."""
    try:
        with open(path) as f:
            d = json.loads(f.read())
    except OSError:
        raise BoardError("board: cannot read %s; pass --board NAME or copy boards/<name>/board.json there" % path)
    except ValueError:
        raise BoardError("board: %s is not valid JSON" % path)
    if not isinstance(d, dict) or not isinstance(d.get("capabilities"), dict):
        raise BoardError("board: %s has no \"capabilities\" object" % path)
    for n, c in d["capabilities"].items():
        if not isinstance(c, dict) or c.get("kind") not in ("actuator", "button", "sensor"):
            raise BoardError("board: capability %s needs \"kind\": actuator, button or sensor" % n)
    return d


def _has_machine():
    try:
        import machine
    except ImportError:
        return False
    return hasattr(machine, "Pin")  # the unix port's machine module has no pins


class Board:
    def __init__(self, desc, simulated=None):
        self.name = desc.get("name", "?")
        self.caps = desc["capabilities"]
        if simulated is None:
            # the unix port has no machine module: any board description runs in memory there
            simulated = desc.get("chip") == "unix" or not _has_machine()
        self.simulated = simulated
        self.values = {}
        self.pins = {}
        self.pressed = []        # button names pressed since the last poll
        self.changed = []        # (sensor, value) readings since the last poll
        self._last_press = {}
        self._next_sample = 0
        for n in sorted(self.caps):
            c = self.caps[n]
            k = c["kind"]
            if k == "actuator":
                self.values[n] = False
            elif k == "button":
                self.values[n] = False
            else:
                self.values[n] = float(c.get("initial", 0.0)) if c.get("driver", "sim") == "sim" or simulated else None
            if not simulated:
                self._setup_pin(n, c)

    # --- hardware (ESP32) ------------------------------------------------------------
    def _setup_pin(self, n, c):
        k = c["kind"]
        if k == "sensor" and c.get("driver", "sim") not in ("sim", "adc", "internal"):
            raise BoardError("board: sensor %s has unknown driver %s (use sim, adc or internal)" % (n, c.get("driver")))
        import machine
        if k == "actuator":
            p = machine.Pin(c["pin"], machine.Pin.OUT)
            p.value(1 if c.get("active_low") else 0)
            self.pins[n] = p
        elif k == "button":
            p = machine.Pin(c["pin"], machine.Pin.IN, machine.Pin.PULL_UP)
            # IRQ only records the press; the pump turns it into an event (no alloc in IRQ)
            p.irq(trigger=machine.Pin.IRQ_FALLING, handler=lambda _p, _n=n: self._irq(_n))
            self.pins[n] = p
        elif c.get("driver") == "adc":
            a = machine.ADC(machine.Pin(c["pin"]))
            try:
                a.atten(machine.ADC.ATTN_11DB)
            except AttributeError:
                pass
            self.pins[n] = a
        elif c.get("driver") == "internal":
            self.pins[n] = None

    def _irq(self, n):
        self.values[n] = True
        if n not in self.pressed:
            self.pressed.append(n)

    def _sample(self, n, c):
        d = c.get("driver", "sim")
        if d == "adc":
            raw = self.pins[n].read_u16()
            return raw * float(c.get("scale", 1.0)) + float(c.get("offset", 0.0))
        if d == "internal":
            import esp32
            try:
                return float(esp32.mcu_temperature())
            except AttributeError:
                return (esp32.raw_temperature() - 32) / 1.8
        return self.values[n]

    # --- what the control core sees ---------------------------------------------------
    def read(self, name):
        return self.values[name]

    def write(self, name, on):
        on = bool(on)
        self.values[name] = on
        p = self.pins.get(name)
        if p is not None:
            c = self.caps[name]
            p.value((0 if on else 1) if c.get("active_low") else (1 if on else 0))

    def poll(self, now_ms):
        """[(kind, name, value)]: ("button", name, True) per debounced press and
        ("sensor", name, value) per sample (every 2 s, or at once on the sim)."""
        out = []
        while self.pressed:
            n = self.pressed.pop(0)
            last = self._last_press.get(n)
            if last is None or now_ms - last >= _DEBOUNCE_MS:
                self._last_press[n] = now_ms
                out.append(("button", n, True))
            self.values[n] = False
        while self.changed:
            n, v = self.changed.pop(0)
            out.append(("sensor", n, v))
        if not self.simulated and now_ms >= self._next_sample:
            self._next_sample = now_ms + _SAMPLE_MS
            for n in sorted(self.caps):
                c = self.caps[n]
                if c["kind"] == "sensor":
                    try:
                        v = self._sample(n, c)
                    except Exception:
                        v = None
                    self.values[n] = v
                    out.append(("sensor", n, v))
        return out

    # --- the simulated board's console hooks ------------------------------------------
    def press(self, name):
        if self.caps.get(name, {}).get("kind") != "button":
            raise BoardError("no button named %s" % name)
        self._irq(name)

    def set_value(self, name, value):
        if self.caps.get(name, {}).get("kind") != "sensor":
            raise BoardError("no sensor named %s" % name)
        self.values[name] = float(value)
        self.changed.append((name, float(value)))
