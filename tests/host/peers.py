"""Peers for the host tests, written once: the MicroPython unix port, Kamailio and SIPp
binaries (a missing one skips the test with what to install), free loopback ports, and
throw-away Kamailio / SIPp processes (Kamailio through sipling_host.edge_kamailio)."""
import os
import shutil
import socket
import tempfile

import pytest

from sipling_host import mpbin
from sipling_host.edge_kamailio import Kamailio, find_kamailio, free_udp_port, port_free  # noqa: F401
from sipling_host.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
INTEROP = os.path.join(ROOT, "tests", "interop")
KAMAILIO = find_kamailio()
SIPP = shutil.which("sipp")
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
# The start of a one-process test Kamailio config on loopback; the test's own config text
# follows, and `% {"port": ..., "mpath": MODULES, ...}` fills it in.
KAMAILIO_HEAD = """#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=1
auto_aliases=no
listen=udp:127.0.0.1:%(port)d
mpath="%(mpath)s"
"""


def micropython():
    """The unix port binary (sipling_host.mpbin), or skip the test saying how to get one."""
    try:
        return mpbin.micropython()
    except UserError as e:
        pytest.skip(str(e))


def has_micropython():
    try:
        mpbin.micropython()
        return True
    except UserError:
        return False


def distinct_free_udp_ports(n, host="127.0.0.1"):
    """n different free UDP ports on host (held together while picked, so no repeats)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_udp_ports(n, host="127.0.0.1"):
    """A base port with n consecutive free UDP ports on host."""
    for _ in range(200):
        base = 20000 + int.from_bytes(os.urandom(2), "big") % 40000
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind((host, base + i))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no %d consecutive free UDP ports on %s" % (n, host))


def kamailio(cfg, port, subst=None, probe_user=None):
    """A started Kamailio (sipling_host.edge_kamailio.Kamailio) listening on 127.0.0.1:port
    as its config says; skips the test when Kamailio is not installed. cfg: the config
    text, or the name of a file in tests/interop/kamailio. @PORT@, @RUNDIR@, @MPATH@ and
    the @NAME@ keys of subst are filled in. Call .cleanup() when done (stops it, removes
    its run directory); .stop() / .start() restart it with the log kept (.log_text())."""
    if KAMAILIO is None:
        pytest.skip("kamailio not installed (make setup installs the Debian package)")
    if "\n" not in cfg:
        with open(os.path.join(INTEROP, "kamailio", cfg)) as f:
            cfg = f.read()
    d = tempfile.mkdtemp(prefix="sipling-kam-")
    keys = {"PORT": str(port), "RUNDIR": d, "MPATH": MODULES}
    keys.update(subst or {})
    for k, v in keys.items():
        cfg = cfg.replace("@%s@" % k, str(v))
    path = os.path.join(d, "k.cfg")
    with open(path, "w") as f:
        f.write(cfg)
    k = Kamailio(port, cfg=path, rundir=d, define_listen=False, probe_user=probe_user, remove_rundir=True)
    try:
        return k.start()
    except UserError:
        k.cleanup()
        raise


def sipp_argv(scenario, port, remote=None, calls=1, timeout=30, media_port=None):
    """SIPp running `scenario` (a path) on 127.0.0.1:port, `calls` calls (-m), failing after
    `timeout` seconds, messages and errors traced to files in its working directory;
    remote "host:port" for a client scenario. Skips the test when SIPp is not installed."""
    if SIPP is None:
        pytest.skip("sipp not installed (make setup installs sip-tester)")
    argv = [SIPP, "-sf", scenario, "-i", "127.0.0.1", "-p", str(port), "-m", str(calls), "-nostdin",
            "-timeout", "%ds" % timeout, "-timeout_error", "-trace_msg", "-trace_err"]
    if media_port:
        argv += ["-mp", str(media_port)]
    if remote:
        argv.append(remote)
    return argv


def send_authed(sock, dest, msg, user, password, timeout=5):
    """Send request `msg` (a sipling Message) from `sock` to `dest` as a UA with a Digest
    account would: a 401/407 challenge (RFC 3261 22.2, 22.3; Kamailio's edge.cfg challenges
    every user) is answered once with credentials, CSeq + 1 and a fresh branch. Returns the
    first response that is not such a challenge, or None when the authenticated request was
    sent (its responses are then for the caller to read from sock)."""
    import os as _os
    from sipling.sip import digest
    from sipling.sip.parser import parse
    sock.settimeout(timeout)
    sock.sendto(msg.serialize(), dest)
    while True:
        r = parse(sock.recv(65535))
        if r.status >= 200:
            break
    if r.status not in (401, 407):
        return r
    www, auth = (b"WWW-Authenticate", b"Authorization") if r.status == 401 else (b"Proxy-Authenticate", b"Proxy-Authorization")
    ch = digest.choose(r.header_lines(www))[0]
    n, method = msg.cseq()
    msg.set("CSeq", b"%d %s" % (n + 1, method))
    via = msg.get("Via")
    msg.set("Via", via.split(b";branch=")[0] + b";branch=z9hG4bK-au" + _os.urandom(6).hex().encode() + b";rport")
    msg.add(auth, digest.authorization(ch, user.encode(), password.encode(), msg.method, msg.uri, msg.body,
                                       cnonce=_os.urandom(8).hex().encode()))
    sock.sendto(msg.serialize(), dest)
    return None
