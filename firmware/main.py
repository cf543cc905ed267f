# Boot entry: load the config and the board, join Wi-Fi, run the app until it stops.
# Paths are relative to the current directory: "/" on the board; the simulated board's
# directory on the unix port (`sipling sim` may point SIPLING_CONFIG / SIPLING_BOARD elsewhere).
# A config problem prints one line each and exits 2 on the unix port, never a traceback; on
# the board it stays at the REPL so `sipling provision` can fix it. No config at all (a fresh
# board) waits for `sipling provision` on the console and starts the app after the commit. A config committed by
# `sipling provision` while the app runs (key rotation) de-registers and restarts the app.
import gc
import os
import sys

from sipling import log
from sipling.shell import board as _board
from sipling.shell import clock

CONFIG = "sipling.json"
BOARD = "board.json"
_UNIX = sys.platform in ("linux", "darwin")


def _env(name, default):
    g = getattr(os, "getenv", None)
    v = g(name) if g else None
    return v or default


def _print_line(line):
    sys.stdout.write(line)


def _fail(lines):
    for ln in lines:
        print("sipling: " + ln)
    if _UNIX:
        sys.exit(2)
    return None


def _config(path):
    # The validator is needed only at start and after a provisioning commit: import it for
    # this call and drop it again, so its code is not in the heap while the app serves
    # (about 11 KiB on the unix port; boards/README.md "Memory").
    from sipling import config
    from sipling.app import unload
    r = config.load(path)
    unload("sipling.config")
    gc.collect()
    return r


def _load(cfg_path, board_path):
    """(cfg, Board) or None after printing the problems."""
    cfg, problems = _config(cfg_path)
    if problems:
        return _fail(problems)
    try:
        desc = _board.load_desc(board_path)
        if desc.get("name") != cfg["board"]:
            return _fail(["config: board is %s but this board is %s; set \"board\": \"%s\" in the config"
                          % (cfg["board"], desc.get("name"), desc.get("name"))])
        return cfg, _board.Board(desc)
    except _board.BoardError as e:
        return _fail([str(e)])


def main():
    cfg_path = _env("SIPLING_CONFIG", CONFIG)
    board_path = _env("SIPLING_BOARD", BOARD)
    state = {"app": None, "reload": False}

    def reload():
        state["reload"] = True
        a = state["app"]
        if a is not None and not a.stopping:
            log.info("app", "new config committed: de-registering to restart with it")
            a.stop(clock.now_ms())

    def on_line(line):
        a = state["app"]
        if a is None:
            return "no config yet: run `sipling provision --port <this board's port>` (^C: REPL)"
        return a.console(line, clock.now_ms())

    # the console carries typed lines and `sipling provision` frames (length, CRC, ack;
    # atomic commit); boot recovery: a transfer cut at any byte leaves the old config whole
    from sipling.shell import console
    con = console.app_console(on_line, lambda name: reload(), cfg_path)
    if con.boot_note:
        print("sipling: " + con.boot_note)
    if _missing(cfg_path) and not _await_config(con, cfg_path, state):
        return
    loaded = _load(cfg_path, board_path)
    if loaded is None:
        return
    log.set_sink(_print_line)
    log.set_clock(clock.now_ms)
    from sipling.shell import wifi
    from sipling.app import App
    from sipling.shell import loop
    while True:
        cfg, b = loaded
        log.set_level(cfg["log"]["level"])
        log.set_trace(cfg["log"]["trace_sip"])
        try:
            ip = wifi.connect(cfg)
        except OSError as e:
            log.error("wifi", str(e))
            return
        try:
            if "ipsec-3gpp" in cfg["secagree"]["mechanisms"] or "ipsec-man" in cfg["secagree"]["mechanisms"]:
                # the one transport object: plain UDP until an ipsec agreement installs SAs
                # the marks live with the board's files: next to the config, or where
                # SIPLING_STATE says (`sipling sim --config` runs a temporary copy of it)
                d = cfg_path.rsplit("/", 1)[0] + "/" if "/" in cfg_path else ""
                d = _env("SIPLING_STATE", d)
                if d and not d.endswith("/"):
                    d += "/"
                transport = loop.EspTransport(cfg, os.urandom, hwm_path=d + "sipling-seq.json")
                hooks = (transport.agreed, transport.drop)
            else:
                transport = loop.PlainTransport(cfg)
                hooks = (None, None)
        except OSError as e:
            # the error names the port that failed (port-c, port-s or the ESP-in-UDP one)
            return _fail(["%s; is another board or sim using it? change local.port_c/port_s or "
                          "ipsec.encap_port" % (e.args[0] if e.args else e)])
        app = App(cfg, b, os.urandom, keepalive_ms=cfg["register"]["keepalive"] * 1000,
                  on_agreed=hooks[0], on_drop=hooks[1])
        if ip:  # the board's DHCP address: Via/Contact, and the ESP inner checksum's source
            app.ua.local_ip = ip
            transport.local = ip
        state["app"] = app
        state["reload"] = False
        loop.run(app, transport, con)
        state["app"] = None
        if not state["reload"]:
            return
        nxt = _load_quiet(cfg_path, board_path)
        if nxt is None:
            log.error("app", "the new config has problems (see above); keeping the previous one")
        else:
            loaded = nxt


def _load_quiet(cfg_path, board_path):
    cfg, problems = _config(cfg_path)
    for p in problems:
        log.error("config", p)
    if problems:
        return None
    try:
        return cfg, _board.Board(_board.load_desc(board_path))
    except _board.BoardError as e:
        log.error("config", str(e))
        return None


def _missing(path):
    try:
        os.stat(path)
        return False
    except OSError:
        return True


def _await_config(con, cfg_path, state):
    """A fresh board (no config file; an invalid one is refused instead): serve the console
    until `sipling provision` has committed one and finished reading it back (1 s without a
    byte after the commit). False on ^C or end of input."""
    import select
    print("sipling: no config (%s): waiting for `sipling provision` on this console" % cfg_path)
    p = select.poll()
    p.register(con.inp, select.POLLIN)
    last = clock.now_ms()
    try:
        while not (state["reload"] and clock.now_ms() - last >= 1000 and not _missing(cfg_path)):
            if p.poll(200):
                if not con.pump():
                    return False
                last = clock.now_ms()
    except KeyboardInterrupt:
        return False
    print("sipling: config committed: starting")
    return True


main()
