"""Start and stop a throw-away Kamailio with the repo's edge.cfg (demo and tests), or with any
other config (the interop tests' peers, tests/host/peers.py).

No root needed: Kamailio runs in the foreground (-DD) in its own process group, with a
temporary run directory, on a loopback port of our choosing.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from . import proxy_users
from .provision import aor_parts, write_private
from .errors import UserError

from .paths import ROOT
CFG = os.path.join(ROOT, "tests", "interop", "kamailio", "edge.cfg")


def find_kamailio():
    for c in (shutil.which("kamailio"), "/usr/sbin/kamailio"):
        if c and os.access(c, os.X_OK):
            return c
    return None


def free_udp_port(host="127.0.0.1"):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def port_free(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _options(host, port, timeout, user=None):
    """True when something answers a SIP OPTIONS on host:port within timeout seconds
    (Request-URI sip:host:port, or sip:user@host:port)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(0.2)
    me = s.getsockname()[1]
    ruri = "%s@%s" % (user, host) if user else host
    msg = ("OPTIONS sip:%s:%d SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK-probe%d;rport\r\n"
           "Max-Forwards: 70\r\nFrom: <sip:probe@%s>;tag=p\r\nTo: <sip:%s:%d>\r\nCall-ID: probe-%d\r\n"
           "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n" % (ruri, port, host, me, me, host, host, port, me))
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end:
            s.sendto(msg.encode(), (host, port))
            try:
                if s.recv(4096).startswith(b"SIP/2.0 "):
                    return True
            except (socket.timeout, ConnectionRefusedError):
                pass
        return False
    finally:
        s.close()


class Kamailio:
    """kamailio -f CFG (edge.cfg unless given) answering on host:port; `log` is the path of
    its output. rundir: where its pid file and log go (a fresh temporary one by default,
    removed by cleanup()); start() again after stop() restarts it there, the log appended.
    define_listen passes -A LISTEN=udp:host:port (edge.cfg listens there; other configs say
    listen= themselves). Ready when an OPTIONS to sip:[probe_user@]host:port is answered.
    cleanup() removes the run directory when it made it, or when remove_rundir is true."""

    def __init__(self, port, host="127.0.0.1", edge_addr=None, cfg=CFG, rundir=None,
                 define_listen=True, probe_user=None, remove_rundir=None, edge_port=None, users=None):
        self.host, self.port, self.edge_addr, self.cfg = host, port, edge_addr, cfg
        self.define_listen, self.probe_user = define_listen, probe_user
        # edge.cfg: the edge's --inner-port, and the Digest accounts {aor: password}; by
        # default one owner account sip:alice@example.test with a fresh password
        self.edge_port = edge_port
        self.users = dict(users) if users is not None else {"sip:alice@example.test": proxy_users.new_password()}
        self.proc = None
        self.rundir = rundir
        self._own_rundir = rundir is None if remove_rundir is None else remove_rundir
        self.log = None

    def start(self, timeout=10):
        exe = find_kamailio()
        if exe is None:
            raise UserError("kamailio is not installed; run `make setup` (as root it installs the Debian package)")
        if not port_free(self.host, self.port):
            raise UserError("port %s:%d is taken by another program; stop it or choose another port"
                            % (self.host, self.port))
        if self.rundir is None:
            self.rundir = tempfile.mkdtemp(prefix="sipling-kamailio-")
        self.log = os.path.join(self.rundir, "kamailio.log")
        argv = [exe, "-f", self.cfg, "-DD", "-E", "-Y", self.rundir, "-P",
                os.path.join(self.rundir, "kamailio.pid"), "-m", "64", "-M", "8"]
        if self.define_listen:
            argv += ["-A", "LISTEN=udp:%s:%d" % (self.host, self.port)]
        if self.edge_addr:
            argv += ["-A", 'EDGE_ADDR="%s"' % self.edge_addr]
        if self.cfg == CFG:
            argv += ["-A", "EDGE_PORT=%d" % (self.edge_port or 5059),
                     "-A", 'USERS_DB="%s"' % proxy_users.db_url(self._write_users())]
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise UserError("kamailio exited at start (code %s): %s" % (self.proc.returncode, tail))
            if _options(self.host, self.port, 0.5, self.probe_user):
                return self
        self.stop()
        raise UserError("kamailio did not answer on %s:%d within %ds" % (self.host, self.port, timeout))

    def _write_users(self):
        db = os.path.join(self.rundir, "users")
        accounts = {}
        for aor, pw in self.users.items():
            accounts[aor_parts(aor)] = pw
        proxy_users.write_users(db, accounts)
        return db

    def password_file(self, aor="sip:alice@example.test"):
        """A 0600 file in the run directory holding that account's password."""
        path = os.path.join(self.rundir, "%s.pw" % aor.split(":", 1)[1])
        write_private(path, self.users[aor] + "\n")
        return path

    def log_tail(self, n=5):
        try:
            with open(self.log, errors="replace") as f:
                return " | ".join(x.strip() for x in f.readlines()[-n:])
        except (OSError, TypeError):
            return ""

    def log_text(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read()
        except (OSError, TypeError):
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        # children share the process group; make sure none outlives us
        if self.proc is not None:
            for _ in range(50):
                try:
                    os.killpg(self.proc.pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def cleanup(self):
        self.stop()
        if self.rundir and self._own_rundir:
            shutil.rmtree(self.rundir, ignore_errors=True)
            self.rundir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
