# Remote-control commands, owner identity and event delivery (firmware/sipling/control).
import json

from sipling.control import commands, events, owners


class FakeBoard:
    def __init__(self):
        self.caps = {"relay": {"kind": "actuator"}, "led": {"kind": "actuator"},
                     "button": {"kind": "button"},
                     "temperature": {"kind": "sensor", "threshold": 30}}
        self.values = {"relay": False, "led": False, "button": False, "temperature": 21.5}

    def read(self, name):
        return self.values[name]

    def write(self, name, on):
        self.values[name] = bool(on)


class FakeMsg:
    def __init__(self, headers):
        self.headers = headers

    def get(self, name):
        v = self.get_all(name)
        return v[0] if v else None

    def get_all(self, name):
        return [v for n, v in self.headers if n.lower() == name.lower()]


def test_status_lists_every_capability():
    b = FakeBoard()
    body, ct, summary = commands.execute(b, b"status")
    assert body == b"ok button=off led=off relay=off temperature=21.5"
    assert ct == b"text/plain" and summary == "status ok"


def test_status_extra_fields():
    body, ct, _ = commands.execute(FakeBoard(), b" STATUS \r\n", status_extra=lambda: [("reg", "registered")])
    assert body.endswith(b" temperature=21.5 reg=registered")


def test_set_relay_on_then_get():
    b = FakeBoard()
    body, _, summary = commands.execute(b, b"set relay on")
    assert body == b"ok relay=on" and b.values["relay"] is True and summary == "set ok"
    assert commands.execute(b, b"get relay")[0] == b"ok relay=on"
    assert commands.execute(b, b"set Relay OFF")[0] == b"ok relay=off"
    assert b.values["relay"] is False


def test_refusals_say_why_and_change_nothing():
    b = FakeBoard()
    assert commands.execute(b, b"set temperature on")[0] == b"error no actuator named 'temperature'; actuators: led,relay"
    assert commands.execute(b, b"set relay maybe")[0] == b"error value must be on or off, got 'maybe'"
    assert commands.execute(b, b"get humidity")[0] == b"error no sensor or actuator named 'humidity'; try help"
    assert commands.execute(b, b"reboot now")[0] == b"error unknown command 'reboot'; try help"
    assert commands.execute(b, b"set relay")[0] == b"error wrong arguments for set; try help"
    assert commands.execute(b, b"")[0] == b"error unknown command ''; try help"
    assert commands.execute(b, b"\xff\xfe")[0] == b"error body is not UTF-8 text"
    assert commands.execute(b, b"set relay on " + b"x" * 300)[0] == b"error command longer than 256 bytes"
    assert b.values["relay"] is False


def test_help():
    body = commands.execute(FakeBoard(), b"help")[0]
    assert body == (b"ok commands=status | get <sensor> | set <actuator> on|off | help "
                    b"sensors=button,temperature actuators=led,relay")


def test_json_commands():
    b = FakeBoard()
    body, ct, _ = commands.execute(b, b'{"cmd": "set", "name": "relay", "value": true}', b"application/json; charset=utf-8")
    assert ct == b"application/json"
    assert json.loads(body) == {"ok": True, "relay": "on"}
    body, ct, _ = commands.execute(b, b'{"command": "get temperature"}', b"Application/JSON")
    assert json.loads(body) == {"ok": True, "temperature": "21.5"}
    body, _, _ = commands.execute(b, b'[1]', b"application/json")
    assert json.loads(body) == {"ok": False, "error": "JSON command must be an object"}
    body, _, _ = commands.execute(b, b'{"cmd": ', b"application/json")
    assert json.loads(body) == {"ok": False, "error": "body is not valid JSON"}


def test_owner_keys():
    assert owners.key(b"sip:alice@Example.TEST:5060;transport=udp") == "alice@example.test"
    assert owners.key("sips:alice@example.test") == "alice@example.test"
    assert owners.key(b"tel:+15551234") is None
    assert owners.key(b"sip:example.test") is None
    assert owners.addr_spec(b'"Alice, A." <sip:alice@example.test>;tag=1') == b"sip:alice@example.test"
    assert owners.addr_spec(b"sip:bob@example.test;tag=9") == b"sip:bob@example.test"


def test_identity_pai_only_when_trusted():
    o = owners.Owners(["sip:alice@example.test"])
    m = FakeMsg([("From", b"<sip:mallory@example.test>;tag=1"),
                 ("P-Asserted-Identity", b"<tel:+1555>, \"A\" <sip:alice@example.test>")])
    assert o.identity(m, True) == ("alice@example.test", "pai")
    # untrusted PAI is ignored, and From is never an identity without the lab switch
    assert o.identity(m, False) == (None, "none")
    assert o.identity(m, False, trust_from=True) == ("mallory@example.test", "from")
    assert o.allowed("alice@example.test")
    assert not o.allowed("mallory@example.test")
    assert not o.allowed(None)
    # user part is case-sensitive (RFC 3261 19.1.4)
    assert not o.allowed(owners.key(b"sip:Alice@example.test"))


def test_identity_from_only_with_the_lab_switch():
    o = owners.Owners(["sip:alice@example.test"])
    m = FakeMsg([("From", b"Alice <sip:alice@EXAMPLE.test>;tag=77")])
    # issue 10 finding 3: a forged From alone is not an owner
    assert o.identity(m, True) == (None, "none")
    assert o.identity(m, True, trust_from=True) == ("alice@example.test", "from")
    assert o.identity(FakeMsg([]), True, trust_from=True) == (None, "from")


def test_threshold_crossing_with_hysteresis():
    w = events.Watcher(FakeBoard().caps)
    assert w.check("temperature", 21.5) is None
    assert w.check("temperature", 30.0) is None
    assert w.check("temperature", 31.5) == "event temperature 31.5 above 30.0"
    assert w.check("temperature", 32.0) is None
    assert w.check("temperature", 29.8) is None  # inside the hysteresis band
    assert w.check("temperature", 29.0) == "event temperature 29.0 below 30.0"
    assert w.check("temperature", 30.5) == "event temperature 30.5 above 30.0"
    assert w.check("relay", 1) is None


def test_outbox_retries_then_gives_up_loudly():
    logs = []
    ob = events.Outbox(lambda lvl, m: logs.append((lvl, m)))
    ob.add("sip:alice@example.test", "event button pressed", 1000)
    assert ob.get_timer() == 1000
    t = 1000
    for attempt in range(1, events.MAX_ATTEMPTS + 1):
        items = ob.due(t)
        assert len(items) == 1 and items[0][2] == attempt
        assert ob.due(t) == []  # in flight
        ob.result(items[0], False, t, "408")
        if attempt < events.MAX_ATTEMPTS:
            want = min(2000 << (attempt - 1), 60000)
            assert ob.get_timer() == t + want
            assert ob.due(t + want - 1) == []
            t += want
    assert ob.items == [] and ob.lost == 1
    assert logs[-1] == ("error", "event to sip:alice@example.test given up after 6 attempts (408): event button pressed")
    assert sum(1 for lvl, _ in logs if lvl == "warn") == 5


def test_outbox_delivers_and_bounds():
    logs = []
    ob = events.Outbox(lambda lvl, m: logs.append((lvl, m)))
    for i in range(events.MAX_PENDING + 1):
        ob.add("sip:a@x", "e%d" % i, 0)
    assert ob.lost == 1 and len(ob.items) == events.MAX_PENDING
    assert logs == [("error", "event to sip:a@x dropped, outbox full (16): e0")]
    items = ob.due(5)
    for it in items:
        ob.result(it, True, 5)
    assert ob.items == [] and ob.delivered == events.MAX_PENDING and ob.get_timer() is None


def test_outbox_hold_requeues_in_flight():
    ob = events.Outbox(lambda lvl, m: None)
    ob.add("sip:a@x", "e", 0)
    assert len(ob.due(0)) == 1
    ob.hold(500)
    assert ob.get_timer() == 500 and len(ob.due(500)) == 1
