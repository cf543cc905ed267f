"""`sipling sim`: run the simulated board (the firmware on the MicroPython unix port).

The config is validated here first with the firmware's own validator, so a mistake prints
one line per problem and exits 1 before anything starts. The board's console is this
terminal (stdin/stdout): type `status`, `press button`, `set temperature 31.5`, `quit`.
It binds only to loopback unless --public is given.

With --fs DIR the board keeps its files in DIR across runs, as a real board keeps them in
flash (config, board.json, ipsec-man sequence marks); a board without a config there waits
for `sipling provision` on its console (--pty), as a freshly flashed board does.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile

from . import mpbin
from .errors import UserError

HELP = "run the simulated board (MicroPython unix port) with a device config"

from .paths import boards_dir, firmware_dir


def add_arguments(p):
    p.add_argument("--config", metavar="FILE",
                   help="device config JSON (docs/config.md); with --fs it is written into DIR, "
                        "replacing the board's config (optional with --fs)")
    p.add_argument("--fs", metavar="DIR",
                   help="the board's filesystem: a directory kept across runs (created if missing); "
                        "without a config in it the board waits for `sipling provision`")
    p.add_argument("--board", default=None, metavar="NAME",
                   help="board description boards/NAME/board.json (default: the config's \"board\")")
    p.add_argument("--public", action="store_true",
                   help="allow binding to a non-loopback local.host (default: loopback only)")
    p.add_argument("--pty", nargs="?", const=True, default=False, metavar="LINK",
                   help="console on a pty (for sipling logs/provision, mpremote) reachable as the "
                        "symlink LINK (default: DIR.tty with --fs, else a temporary path)")
    p.add_argument("--micropython", default=None, metavar="PATH", help="MicroPython unix port binary")
    p.add_argument("--check", action="store_true", help="only validate the config and exit")


def check_config(path):
    """(cfg, raw) or UserError after printing one line per problem to stderr."""
    from . import mpshim
    mpshim.install()
    from sipling import config
    if not os.path.isfile(path):
        raise UserError("cannot read config %s; create one (docs/config.md) or run `sipling provision`" % path)
    cfg, problems = config.load(path)
    if problems:
        for p in problems:
            print("sipling: %s" % p, file=sys.stderr)
        raise UserError("%s has %d problem%s; fix %s and run again"
                        % (path, len(problems), "" if len(problems) == 1 else "s",
                           "it" if len(problems) == 1 else "them"))
    with open(path) as f:
        raw = json.load(f)
    return cfg, raw


def prepare(args):
    """(argv, env, tmpdir) to start the simulated board; validates everything first."""
    fs = os.path.abspath(args.fs) if args.fs else None
    fscfg = os.path.join(fs, "sipling.json") if fs else None
    cfg = raw = None
    if args.config:
        cfg, raw = check_config(args.config)
    elif fs is None:
        raise UserError("give --config FILE, or --fs DIR for a board that keeps its files there "
                        "(a board without a config waits for `sipling provision`)")
    elif os.path.isfile(fscfg):
        cfg, _ = check_config(fscfg)       # the board's own file: validated, never rewritten
        if args.board and args.board != cfg["board"]:
            raise UserError("%s is for board %s; leave out --board %s or provision it again with --board %s"
                            % (fscfg, cfg["board"], args.board, args.board))
    elif args.check:
        raise UserError("%s has no sipling.json yet; provision the board or give --config FILE" % fs)
    board = args.board or (cfg["board"] if cfg else None) or (fs and _fs_board(fs)) or "sim"
    bpath = os.path.join(boards_dir(), board, "board.json")
    if not os.path.isfile(bpath):
        names = sorted(n for n in os.listdir(boards_dir()) if os.path.isfile(os.path.join(boards_dir(), n, "board.json")))
        raise UserError("no board named %s; choose one of %s" % (board, ", ".join(names)))
    host = cfg["local"]["host"] if cfg else "127.0.0.1"
    if raw is None and not host.startswith("127.") and not args.public:
        raise UserError("%s: local.host is %s but the simulated board binds to loopback; provision it "
                        "with --local 127.0.0.1, or pass --public" % (fscfg, host))
    tmp = tempfile.mkdtemp(prefix="sipling-sim-")
    cpath = os.path.abspath(args.config) if args.config else fscfg
    if raw is not None and not host.startswith("127.") and not args.public:
        # loopback only by default: rewrite local.host in a private copy of the config
        raw.setdefault("local", {})["host"] = "127.0.0.1"
        print("sipling: local.host %s -> 127.0.0.1 (the simulated board binds to loopback; --public to override)"
              % host, file=sys.stderr)
    if raw is not None and board != cfg["board"]:
        raw["board"] = board
    if raw is not None:
        cpath = os.path.join(tmp, "sipling.json")
        fd = os.open(cpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds secrets
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
    mp = mpbin.micropython(args.micropython)
    env = dict(os.environ, MICROPYPATH=firmware_dir() + ":.frozen", SIPLING_CONFIG=cpath, SIPLING_BOARD=bpath)
    if args.config and not fs:
        # the config runs as a temporary copy, but what the board persists (ipsec-man
        # sequence and replay marks) must outlive it: DIR/NAME.state/ beside the config
        env["SIPLING_STATE"] = state_dir(args.config)
    return [mp, os.path.join(firmware_dir(), "main.py")], env, tmp


def state_dir(config):
    """Where `sipling sim --config FILE` keeps the board's persistent marks (mode 0700)."""
    base = os.path.abspath(config)
    d = (base[:-5] if base.endswith(".json") else base) + ".state"
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def _fs_board(fs):
    """The name in DIR/board.json (a board that ran before), or None."""
    try:
        with open(os.path.join(fs, "board.json")) as f:
            return json.load(f).get("name")
    except (OSError, ValueError, AttributeError):
        return None


def _install(args, env, fs):
    """The board's directory: its config (a --config replaces it, mode 0600) and board.json;
    env pointing the firmware there."""
    os.makedirs(fs, mode=0o700, exist_ok=True)
    dst = os.path.join(fs, "sipling.json")
    if args.config:
        tmpf = dst + ".sim"
        fd = os.open(tmpf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)   # holds secrets
        with os.fdopen(fd, "wb") as f, open(env["SIPLING_CONFIG"], "rb") as src:
            f.write(src.read())
        os.replace(tmpf, dst)
    shutil.copy(env["SIPLING_BOARD"], os.path.join(fs, "board.json"))
    return dict(env, SIPLING_CONFIG=dst, SIPLING_BOARD=os.path.join(fs, "board.json"))


def run(args):
    # everything the simulated board writes (its config with keys and passwords, sequence
    # and replay marks) and everything made for it is private to this user: mode 0600/0700,
    # as on the board, where nobody else can read the flash (issue 10 finding 10)
    os.umask(0o077)
    argv, env, tmp = prepare(args)
    if args.check:
        print("sipling: %s is valid" % (args.config or env["SIPLING_CONFIG"]))
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        if not args.pty and not os.path.isfile(env["SIPLING_CONFIG"] or ""):
            raise UserError("%s has no config yet: run with --pty and provision it (`sipling provision "
                            "--port LINK`), or give --config FILE" % os.path.abspath(args.fs))
        cwd = None
        if args.fs or args.pty:
            # the board's filesystem is a directory: sipling.json and board.json in it (kept
            # with --fs, thrown away otherwise); the console on a pty for `sipling logs`,
            # `sipling provision`, `mpremote connect PORT resume`
            cwd = os.path.abspath(args.fs) if args.fs else os.path.join(tmp, "fs")
            env = _install(args, env, cwd)
        if args.pty:
            from . import ptyboard
            if args.pty is not True:
                link = args.pty
            elif args.fs:
                link = cwd.rstrip("/") + ".tty"
            else:
                link = os.path.join(tmp, "board.tty")
            return ptyboard.run(argv, env, link=os.path.abspath(link), cwd=cwd)
        print(banner(env["SIPLING_CONFIG"]), file=sys.stderr, flush=True)
        p = subprocess.Popen(argv, env=env, cwd=cwd)
        signalled = []

        def _term(signum, frame):
            signalled.append(signum)
            raise KeyboardInterrupt()
        # a `kill` (SIGTERM) or a closed terminal stops the board as ^C does, and the
        # temporary copy of the config (keys inside) is removed (issue 10 finding 8)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _term)
        try:
            return p.wait()
        except KeyboardInterrupt:
            # ^C reaches the board too (same process group); a signal sent to us alone is
            # passed on as SIGINT: it de-registers, then exits
            if signalled and p.poll() is None:
                p.send_signal(signal.SIGINT)
            try:
                return p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                return 130
    finally:
        shutil.rmtree(tmp, ignore_errors=True)



def banner(path):
    """One line saying what runs where (no secrets)."""
    with open(path) as f:
        c = json.load(f)
    loc = c.get("local", {})
    px = c["proxy"]
    return ("sipling: simulated board %s as %s on %s ports %d/%d, proxy %s:%d; console: help, status, "
            "press button, set temperature 31.5, quit" % (
                c["board"], c["identity"]["aor"], loc.get("host", "127.0.0.1"), loc.get("port_c", 5062),
                loc.get("port_s", 5064), px["host"], px.get("port", 5060)))
