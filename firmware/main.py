# Boot entry: load the config and the board, join Wi-Fi, run the app until it stops.
# On the unix port (the simulated board) `sipling sim` sets SIPLING_CONFIG / SIPLING_BOARD;
# a config problem prints one line each and exits 2, never a traceback.
import os
import sys

from sipling import config, log
from sipling.shell import board as _board
from sipling.shell import clock

CONFIG = "/sipling.json"
BOARD = "/board.json"


def _env(name, default):
    g = getattr(os, "getenv", None)
    v = g(name) if g else None
    return v or default


def _print_line(line):
    sys.stdout.write(line)


def _fail(lines):
    for ln in lines:
        print("sipling: " + ln)
    if sys.platform == "linux":
        sys.exit(2)
    # on the board: stay at the REPL so `sipling provision` can fix it


def main():
    cfg, problems = config.load(_env("SIPLING_CONFIG", CONFIG))
    if problems:
        return _fail(problems)
    try:
        desc = _board.load_desc(_env("SIPLING_BOARD", BOARD))
        if desc.get("name") != cfg["board"]:
            return _fail(["config: board is %s but this board is %s; set \"board\": \"%s\" in the config"
                          % (cfg["board"], desc.get("name"), desc.get("name"))])
        b = _board.Board(desc)
    except _board.BoardError as e:
        return _fail([str(e)])
    log.set_sink(_print_line)
    log.set_clock(clock.now_ms)
    log.set_level(cfg["log"]["level"])
    log.set_trace(cfg["log"]["trace_sip"])
    from sipling.shell import wifi
    try:
        ip = wifi.connect(cfg)
    except OSError as e:
        log.error("wifi", str(e))
        return
    from sipling.app import App
    from sipling.shell import loop
    try:
        if "ipsec-3gpp" in cfg["secagree"]["mechanisms"]:
            # the one transport object: plain UDP until an ipsec agreement installs SAs
            transport = loop.EspTransport(cfg, os.urandom)
            hooks = (transport.agreed, transport.drop)
        else:
            transport = loop.PlainTransport(cfg)
            hooks = (None, None)
    except OSError as e:
        return _fail(["cannot bind %s ports %d/%d (%s); is another sim running? change local.port_c/port_s"
                      % (cfg["local"]["host"], cfg["local"]["port_c"], cfg["local"]["port_s"], e)])
    app = App(cfg, b, os.urandom, keepalive_ms=cfg["register"]["keepalive"] * 1000,
              on_agreed=hooks[0], on_drop=hooks[1])
    if ip:
        app.ua.local_ip = ip
    loop.run(app, transport, console=True)


main()
