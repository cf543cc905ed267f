"""`make demo`: Kamailio + `sipling edge` + a simulated board, controlled by a real SIP UA.

One command from a fresh clone (`make demo` sets up .venv first). Everything runs as the
current user on 127.0.0.1 with ESP-in-UDP, in a temporary directory, and is stopped at the
end (exit 0), or at the first problem (one line saying what to do, exit 1).

    board (MicroPython unix port) --ESP-in-UDP--> sipling edge --SIP--> Kamailio <--SIP-- remote UA

Ports: SIPLING_DEMO_BASE (default 15060) and the next few; set it if those are taken.
"""
import argparse
import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from .errors import UserError

AOR = "sip:door@example.test"
OWNER = "sip:alice@example.test"
PAIR = ["hmac-sha-1-96", "aes-cbc"]


def _say(text):
    print("demo: " + text, flush=True)


def _show(who, text):
    print("  %-7s %s" % (who, text), flush=True)


def _ports(base):
    return {"edge SIP": base, "edge inner": base + 1, "device port-c": base + 2, "device port-s": base + 4,
            "Kamailio": base + 10, "edge ESP-in-UDP": base + 20, "device ESP-in-UDP": base + 21}


class Proc:
    """A child process with its output lines collected by a thread."""

    def __init__(self, name, argv, env=None, stdin=False):
        self.name = name
        self.lines = []
        self.q = queue.Queue()
        self.p = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                  text=True, bufsize=1, start_new_session=True)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for line in self.p.stdout:
            line = line.rstrip("\n")
            self.lines.append(line)
            self.q.put(line)

    def send(self, line):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()

    def wait_for(self, pattern, timeout, show=None):
        """The first new line matching pattern; lines matching `show` are printed meanwhile."""
        rx = re.compile(pattern)
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return None
            try:
                line = self.q.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.p.poll() is not None and self.q.empty():
                    return None
                continue
            if show and re.search(show, line):
                _show(self.name, _strip_ms(line))
            if rx.search(line):
                return line

    def stop(self, sig=signal.SIGTERM, timeout=8, grace=0):
        """Wait `grace` s for a natural exit, then signal its process group; the exit code."""
        if grace:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.p.wait(timeout=grace)
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.p.pid, sig)
            try:
                self.p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.p.pid, signal.SIGKILL)  # anything it left behind in its group
        self.t.join(timeout=2)
        return self.p.returncode


def _strip_ms(line):
    # "<ms> <level> <module>: <message>" -> "<level> <module>: <message>"
    head, sep, rest = line.partition(" ")
    return rest if sep and head.isdigit() else line


def make_config(tmp, ports):
    """Fresh keys and the device config + edge bundle, through provision.build()."""
    from . import provision
    p = argparse.ArgumentParser()
    provision.add_arguments(p)
    args = p.parse_args(["--port", "none", "--aor", AOR, "--proxy", "127.0.0.1:%d" % ports["edge SIP"],
                         "--owner", OWNER, "--mechanisms", "ipsec-3gpp",
                         "--port-c", str(ports["device port-c"]), "--port-s", str(ports["device port-s"]),
                         "--encap-port", str(ports["device ESP-in-UDP"]), "--expires", "600"])
    cfg, bundle = provision.build(args)
    for ip in (cfg["ipsec"], bundle["ipsec"]):
        ip["algs"] = [PAIR]
        ip["encap_port"] = ports["device ESP-in-UDP"]
        ip["peer_encap_port"] = ports["edge ESP-in-UDP"]
    path = os.path.join(tmp, "door.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(cfg, f, indent=1)
    bpath = provision.write_bundle(os.path.join(tmp, "bundles"), bundle)
    return path, bpath


def check_prerequisites():
    from .edge_kamailio import find_kamailio
    from .mpbin import micropython
    if find_kamailio() is None:
        raise UserError("kamailio is not installed; as root run `make setup` (it installs the Debian package), "
                        "or `apt-get install kamailio`")
    micropython()
    try:
        import pjsua2  # noqa: F401
    except ImportError:
        raise UserError("pjsua2 is missing; run `.venv/bin/pip install pjsua2-python` (make setup does it)") from None


def run_demo(base):
    from .edge_kamailio import Kamailio, port_free
    ports = _ports(base)
    for what, port in ports.items():
        if not port_free("127.0.0.1", port):
            raise UserError("UDP port %d (%s) is already in use on 127.0.0.1; stop what uses it or run "
                            "`SIPLING_DEMO_BASE=%d make demo`" % (port, what, base + 1000))
    check_prerequisites()
    py = sys.executable
    tmp = tempfile.mkdtemp(prefix="sipling-demo-")
    procs = []
    kam = None
    try:
        cfg_path, bundle_path = make_config(tmp, ports)
        _say("fresh keys: device config %s, edge bundle %s (mode 0600)" % (cfg_path, bundle_path))

        # the owner's Digest account (a fresh password); Kamailio trusts the edge by address and port
        kam = Kamailio(ports["Kamailio"], edge_addr="127.0.0.1", edge_port=ports["edge inner"]).start()
        _say("Kamailio on 127.0.0.1:%d (tests/interop/kamailio/edge.cfg: registrar with Path)"
             % ports["Kamailio"])

        edge = Proc("edge", [py, "-m", "sipling_host", "edge", "--bundles", os.path.dirname(bundle_path),
                             "--sip-port", str(ports["edge SIP"]), "--inner-port", str(ports["edge inner"]),
                             "--encap-port", str(ports["edge ESP-in-UDP"]),
                             "--proxy", "127.0.0.1:%d" % ports["Kamailio"], "--state-dir", os.path.join(tmp, "state")])
        procs.append(edge)
        if edge.wait_for(r"listening", 10) is None:
            raise UserError("the edge did not start: %s" % " | ".join(edge.lines[-3:]))
        _say("edge on 127.0.0.1:%d (ESP-in-UDP %d), relaying to Kamailio"
             % (ports["edge SIP"], ports["edge ESP-in-UDP"]))

        board = Proc("board", [py, "-m", "sipling_host", "sim", "--config", cfg_path], stdin=True)
        procs.append(board)
        _say("simulated board %s starting (MicroPython unix port), registering through the edge" % AOR)
        if board.wait_for(r"registered as", 30, show=r"sec-agree: (offering|agreed)|registered as|ERROR|WARN|ALARM") is None:
            raise UserError("the board did not register within 30 s; board: %s | edge: %s"
                            % (" | ".join(board.lines[-3:]), " | ".join(edge.lines[-3:])))
        for line in edge.lines:
            if "agreed" in line or "registration state" in line:
                _show("edge", _strip_ms(line))

        _say("remote control %s (pjsua2) sends `status` and `set relay on` through Kamailio" % OWNER)
        ua = subprocess.run([py, "-m", "sipling_host.edge_remote", "--proxy", "127.0.0.1:%d" % ports["Kamailio"],
                             "--aor", OWNER, "--to", AOR, "--send", "status", "--send", "set relay on",
                             "--password-file", kam.password_file(OWNER)],
                            capture_output=True, text=True, timeout=90)
        events = [json.loads(x) for x in ua.stdout.splitlines() if x.startswith("{")]
        for e in events:
            if e["event"] == "sent":
                _show("remote", "> %s   (%s)" % (e["text"], e["code"]))
            elif e["event"] == "reply":
                _show("door", "< %s" % e["text"])
            elif e["event"] == "error":
                _show("remote", "error: %s" % e["text"])
        if ua.returncode != 0:
            raise UserError("the remote control did not get its answers (see above); edge: %s"
                            % " | ".join(edge.lines[-3:]))

        board.send("status")
        line = board.wait_for(r"^status:", 5)
        _say("board console says: %s" % (line or "(no answer)"))
        if line is None or "relay=on" not in line:
            raise UserError("the relay is not on after `set relay on`")

        _say("shutting down: the board de-registers, then the edge and Kamailio stop")
        board.send("quit")
        board.wait_for(r"unregistered|de-register|stopped", 8)
        rc = board.stop(signal.SIGINT, grace=5)
        procs.remove(board)
        edge.stop()
        procs.remove(edge)
        for line in edge.lines:
            if "drops" in line:
                _show("edge", _strip_ms(line))
        kam.cleanup()
        kam = None
        _say("done: everything stopped (board exit %s); nothing left running" % rc)
        return 0
    finally:
        for p in procs:
            p.stop()
        if kam is not None:
            kam.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv=None):
    from . import mpshim
    mpshim.install()
    base = os.environ.get("SIPLING_DEMO_BASE", "15060")
    if not base.isdigit() or not 1024 < int(base) < 65000:
        print("sipling demo: SIPLING_DEMO_BASE must be a port number like 15060", file=sys.stderr)
        return 1
    try:
        return run_demo(int(base))
    except UserError as e:
        print("sipling demo: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sipling demo: interrupted; everything stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
