"""`sipling sim`: run the simulated board (the firmware on the MicroPython unix port).

The config is validated here first with the firmware's own validator, so a mistake prints
one line per problem and exits 1 before anything starts. The board's console is this
terminal (stdin/stdout): type `status`, `press button`, `set temperature 31.5`, `quit`.
It binds only to loopback unless --public is given.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from .errors import UserError

HELP = "run the simulated board (MicroPython unix port) with a device config"

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
BOARDS = os.path.join(ROOT, "boards")


def add_arguments(p):
    p.add_argument("--config", required=True, metavar="FILE", help="device config JSON (docs/config.md)")
    p.add_argument("--board", default=None, metavar="NAME",
                   help="board description boards/NAME/board.json (default: the config's \"board\")")
    p.add_argument("--public", action="store_true",
                   help="allow binding to a non-loopback local.host (default: loopback only)")
    p.add_argument("--pty", action="store_true", help="expose the console as a pty (for sipling logs/provision)")
    p.add_argument("--micropython", default=None, metavar="PATH", help="MicroPython unix port binary")
    p.add_argument("--check", action="store_true", help="only validate the config and exit")


def find_micropython(explicit=None):
    """The unix port binary: --micropython, $MICROPYTHON, the venv's, or PATH."""
    cands = [explicit, os.environ.get("MICROPYTHON"), os.path.join(os.path.dirname(sys.executable), "micropython"),
             os.path.join(ROOT, ".venv", "bin", "micropython"), shutil.which("micropython")]
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    raise UserError("MicroPython unix port not found; run `make setup` or pass --micropython PATH")


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
    cfg, raw = check_config(args.config)
    board = args.board or cfg["board"]
    bpath = os.path.join(BOARDS, board, "board.json")
    if not os.path.isfile(bpath):
        names = sorted(n for n in os.listdir(BOARDS) if os.path.isfile(os.path.join(BOARDS, n, "board.json")))
        raise UserError("no board named %s; choose one of %s" % (board, ", ".join(names)))
    host = cfg["local"]["host"]
    tmp = tempfile.mkdtemp(prefix="sipling-sim-")
    cpath = os.path.abspath(args.config)
    if (not host.startswith("127.")) and not args.public:
        # loopback only by default: rewrite local.host in a private copy of the config
        raw.setdefault("local", {})["host"] = "127.0.0.1"
        print("sipling: local.host %s -> 127.0.0.1 (the simulated board binds to loopback; --public to override)"
              % host, file=sys.stderr)
    if board != cfg["board"]:
        raw["board"] = board
    if raw is not None:
        cpath = os.path.join(tmp, "sipling.json")
        fd = os.open(cpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds secrets
        with os.fdopen(fd, "w") as f:
            json.dump(raw, f)
    mp = find_micropython(args.micropython)
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen", SIPLING_CONFIG=cpath, SIPLING_BOARD=bpath)
    return [mp, os.path.join(FIRMWARE, "main.py")], env, tmp


def run(args):
    argv, env, tmp = prepare(args)
    if args.check:
        print("sipling: %s is valid" % args.config)
        shutil.rmtree(tmp, ignore_errors=True)
        return 0
    try:
        if args.pty:
            # the board's filesystem is a directory: /sipling.json and /board.json in it, the
            # console on a pty for `sipling logs`, `sipling provision`, `mpremote ... resume`
            from . import ptyboard
            fsdir = os.path.join(tmp, "fs")
            os.makedirs(fsdir)
            shutil.copy(env["SIPLING_CONFIG"], os.path.join(fsdir, "sipling.json"))
            os.chmod(os.path.join(fsdir, "sipling.json"), 0o600)
            shutil.copy(env["SIPLING_BOARD"], os.path.join(fsdir, "board.json"))
            return ptyboard.serve(argv[1], cwd=fsdir, link=os.path.join(tmp, "board.tty"))
        print(banner(env["SIPLING_CONFIG"]), file=sys.stderr, flush=True)
        p = subprocess.Popen(argv, env=env)
        try:
            return p.wait()
        except KeyboardInterrupt:
            # ^C reaches the board too (same process group): it de-registers, then exits
            try:
                return p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
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
