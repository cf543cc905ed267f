# The simulated board driver (firmware/sipling/shell/board.py) and boards/sim/board.json.
from util import raises

from sipling.shell import board as B

SIM = "boards/sim/board.json"


def _desc():
    import sys
    for root in ("", "../", "../../"):
        try:
            return B.load_desc(root + SIM)
        except B.BoardError:
            pass
    raise AssertionError("boards/sim/board.json not found from %s" % sys.path)


def test_sim_board_json_shape():
    d = _desc()
    assert d["name"] == "sim" and d["chip"] == "unix"
    caps = d["capabilities"]
    assert caps["relay"] == {"kind": "actuator", "pin": 26}
    assert caps["button"]["kind"] == "button"
    assert caps["temperature"]["kind"] == "sensor" and caps["temperature"]["threshold"] == 30


def test_press_is_debounced_and_reported_once():
    b = B.Board(_desc())
    assert b.simulated and b.read("button") is False
    b.press("button")
    assert b.read("button") is True
    assert b.poll(1000) == [("button", "button", True)]
    assert b.read("button") is False and b.poll(1001) == []
    b.press("button")
    assert b.poll(1020) == []  # inside the 50 ms debounce
    b.press("button")
    assert b.poll(1100) == [("button", "button", True)]


def test_sensor_value_and_actuators_in_memory():
    b = B.Board(_desc())
    assert b.read("temperature") == 21.5
    b.set_value("temperature", "31.5")
    assert b.read("temperature") == 31.5
    assert b.poll(0) == [("sensor", "temperature", 31.5)]
    b.write("relay", 1)
    assert b.read("relay") is True


def test_console_mistakes_raise_board_error():
    b = B.Board(_desc())
    e = raises(B.BoardError, b.press, "relay")
    assert str(e) == "no button named relay"
    e = raises(B.BoardError, b.set_value, "relay", 3)
    assert str(e) == "no sensor named relay"


def test_bad_descriptions():
    e = raises(B.BoardError, B.load_desc, "/nonexistent/board.json")
    assert str(e).startswith("board: cannot read /nonexistent/board.json")
    raises(B.BoardError, B.Board, {"name": "x", "capabilities": {"s": {"kind": "sensor", "driver": "bogus"}}}, False)
