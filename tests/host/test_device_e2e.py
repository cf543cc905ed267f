"""End to end: the simulated board (firmware/main.py on the MicroPython unix port, started by
`sipling sim`) registers with a real Kamailio through RFC 3329 sec-agree with the digest
mechanism (tests/interop/kamailio/device.cfg), then real UAs (SIPp) control it through
Kamailio:

- the owner (alice) sends `status` and `set relay on`; the device answers 200 without a body
  and sends the result back as a new MESSAGE, which a SIPp UAS on alice's contact receives;
- mallory (not an owner) gets 403 and the relay does not change;
- Kamailio is killed and started again (its nonce secret and location table are gone); the
  device notices through its keep-alive, registers afresh and is controllable again;
- `quit` on the console de-registers (Kamailio logs the expires=0 binding).
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import pytest

import peers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PASSWORD = "door-pw-7"

pytestmark = pytest.mark.skipif(not (peers.KAMAILIO and peers.SIPP), reason="kamailio and sipp are needed (make setup)")


def free_port(n=1):
    """n consecutive free UDP ports on loopback."""
    return peers.free_udp_port() if n == 1 else peers.free_udp_ports(n)


class Sim:
    """`sipling sim --config ...` with its console on a pipe; stdout collected by a thread."""

    def __init__(self, cfgpath):
        env = dict(os.environ)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sipling_host", "sim", "--config", cfgpath],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
            cwd=ROOT, start_new_session=True)
        self.lines = []
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.append(raw.decode(errors="replace").rstrip("\n"))

    def send(self, line):
        self.proc.stdin.write((line + "\n").encode())
        self.proc.stdin.flush()

    def wait_for(self, pattern, start=0, timeout=20):
        rx = re.compile(pattern)
        end = time.time() + timeout
        while time.time() < end:
            for i in range(start, len(self.lines)):
                if rx.search(self.lines[i]):
                    return i
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError("no line matching %r; output:\n%s" % (pattern, "\n".join(self.lines[-60:])))

    def stop(self):
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(8)
            except (OSError, subprocess.TimeoutExpired):
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _message(cseq, user, body):
    return """
  <send retrans="500"><![CDATA[
MESSAGE sip:door@example.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:%(user)s@example.test>;tag=[pid]SIPpTag00[call_number]
To: <sip:door@example.test>
Call-ID: [call_id]
CSeq: %(cseq)d MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

%(body)s]]></send>
""" % {"cseq": cseq, "user": user, "body": body}


def owner_scenario(uas_port, bodies):
    s = ['<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="owner">',
         """
  <send retrans="500"><![CDATA[
REGISTER sip:example.test SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:alice@example.test>;tag=[pid]SIPpTag00[call_number]
To: <sip:alice@example.test>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:alice@127.0.0.1:%d>
Expires: 600
Max-Forwards: 70
Content-Length: 0

]]></send>
  <recv response="200"/>
""" % uas_port]
    for i, b in enumerate(bodies):
        s.append(_message(2 + i, "alice", b))
        s.append('  <recv response="200"/>\n  <pause milliseconds="300"/>\n')
    s.append("</scenario>\n")
    return "".join(s)


def stranger_scenario():
    return ('<?xml version="1.0" encoding="ISO-8859-1" ?>\n<scenario name="stranger">'
            + _message(1, "mallory", "set relay off") + '  <recv response="403"/>\n</scenario>\n')


UAS = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="inbox">
  <recv request="MESSAGE"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
</scenario>
"""


def sipp(d, name, xml, port, remote=None, calls=1, timeout=25, background=False):
    path = os.path.join(d, name + ".xml")
    with open(path, "w") as f:
        f.write(xml)
    argv = peers.sipp_argv(path, port, remote, calls, timeout, media_port=free_port(2))
    if background:
        return subprocess.Popen(argv, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    return subprocess.run(argv, cwd=d, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, timeout=timeout + 10)


def messages_log(d, name):
    out = []
    for n in os.listdir(d):
        if n.startswith(name + "_") and n.endswith("_messages.log"):
            with open(os.path.join(d, n), errors="replace") as f:
                out.append(f.read())
    return "\n".join(out)


def inbox_bodies(d):
    """Bodies of the MESSAGEs the SIPp UAS received (from its -trace_msg log)."""
    text = messages_log(d, "inbox")
    bodies = []
    for m in re.finditer(r"MESSAGE sip:alice@[^\n]*\n(.*?)\r?\n\r?\n([^\n\r]*)", text, re.S):
        bodies.append(m.group(2))
    return bodies


def control_round(d, kport, tag, bodies, then=None):
    """The owner registers (contact = a SIPp UAS inbox) and sends `bodies`; then() runs
    afterwards (e.g. a console button press) and counts for one more inbox MESSAGE."""
    uas_port = free_port()
    uas = sipp(d, "inbox", UAS, uas_port, calls=len(bodies) + (1 if then else 0), timeout=25, background=True)
    try:
        r = sipp(d, "owner", owner_scenario(uas_port, bodies), free_port(), "127.0.0.1:%d" % kport)
        assert r.returncode == 0, "owner scenario failed (%s):\n%s" % (tag, messages_log(d, "owner")[-3000:])
        if then:
            then()
        uas.wait(25)
        assert uas.returncode == 0, "device replies not received (%s)" % tag
    finally:
        if uas.poll() is None:
            uas.kill()
            uas.wait()
    got = inbox_bodies(d)
    for n in os.listdir(d):  # next round starts with clean logs
        if n.endswith("_messages.log") or n.endswith("_errors.log"):
            os.remove(os.path.join(d, n))
    return got


@pytest.fixture
def rig():
    d = tempfile.mkdtemp(prefix="sipling-e2e-")
    kport = free_port()
    lport = free_port(2)
    k = peers.kamailio("device.cfg", kport, {"PASSWORD": PASSWORD})
    cfg = os.path.join(d, "dev.json")
    with open(cfg, "w") as f:
        f.write("""{"version": 1, "board": "sim",
 "identity": {"aor": "sip:door@example.test", "auth_user": "door", "password": "%s"},
 "proxy": {"host": "127.0.0.1", "port": %d, "domain": "example.test"},
 "local": {"host": "127.0.0.1", "port_c": %d, "port_s": %d},
 "secagree": {"mechanisms": ["digest"], "require_ipsec": false},
 "control": {"digest_commands": true},
 "owners": ["sip:alice@example.test"],
 "register": {"expires": 600, "keepalive": 1},
 "log": {"level": "info", "trace_sip": false}}""" % (PASSWORD, kport, lport, lport + 1))
    sim = Sim(cfg)
    try:
        yield d, k, sim
    finally:
        sim.stop()
        k.cleanup()
        shutil.rmtree(d, ignore_errors=True)


def test_register_control_forbid_restart_deregister(rig):
    d, k, sim = rig
    sim.wait_for(r"INFO ua: registered as sip:door@example\.test .* via digest")
    log = k.log_text()
    assert "sec-agree: 494 to sip:door@example.test (Security-Client: digest)" in log
    assert "sec-agree: REGISTER from sip:door@example.test verified" in log

    # the owner: status, then set relay on; replies come back as MESSAGEs
    # ... and a button press on the board's console is reported to the owner as an event
    got = control_round(d, k.port, "first", ["status", "set relay on"], then=lambda: sim.send("press button"))
    assert len(got) == 3, got
    assert got[0].startswith("ok button=off led=off relay=off temperature=21.5 sip=registered_via_digest"), got
    assert got[1] == "ok relay=on", got
    assert got[2] == "event button pressed", got
    sim.wait_for(r"command from alice@example\.test \(pai\): set ok")
    sim.wait_for(r"INFO event: delivered to sip:alice@example\.test: event button pressed")

    # a stranger: 403, nothing executed
    r = sipp(d, "stranger", stranger_scenario(), free_port(), "127.0.0.1:%d" % k.port)
    assert r.returncode == 0, messages_log(d, "stranger")[-3000:]
    sim.wait_for(r"WARN ua: 403 to mallory@example\.test \(pai\): not an owner")
    mark = len(sim.lines)
    sim.send("status")
    sim.wait_for(r"^status: sip registered via digest; .*relay=on", mark)

    # proxy restart: the device must notice and register afresh
    k.stop()
    mark = len(sim.lines)
    k.start()
    sim.wait_for(r"association with 127\.0\.0\.1:\d+ lost", mark, timeout=30)
    sim.wait_for(r"INFO ua: registered as sip:door@example\.test", mark, timeout=30)
    got = control_round(d, k.port, "after restart", ["set relay off"])
    assert got == ["ok relay=off"], got

    # orderly shutdown de-registers
    mark = len(sim.lines)
    sim.send("quit")
    sim.wait_for(r"state stopped: de-registered", mark)
    assert sim.proc.wait(5) == 0
    assert re.search(r"REGISTER from sip:door@example\.test, saving contact <[^>]+>;expires=0", k.log_text())


def test_wrong_config_is_one_line_per_problem_and_exit_1(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('{"version": 1, "board": "sim", "identity": {"aor": "sip:door@example.test", "password": "x"},'
                 ' "proxy": {"host": "proxy.lan", "port": 0}, "owners": ["alice"], "log": {"level": "loud"},'
                 ' "secagree": {"mechanisms": ["digest"], "require_ipsec": false}}')
    r = subprocess.run([sys.executable, "-m", "sipling_host", "sim", "--config", str(p)],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert lines == [
        "sipling: %s: proxy.host: must be an IPv4 address like 192.168.1.10, got \"proxy.lan\" (no DNS on the board)" % p,
        "sipling: %s: proxy.port: must be a whole number from 1 to 65535, got 0" % p,
        "sipling: %s: owners[0]: must be a SIP URI like \"sip:alice@example.test\", got \"alice\"" % p,
        "sipling: %s: log.level: must be one of debug, info, warn, error, got \"loud\"" % p,
        "sipling: %s has 4 problems; fix them and run again" % p,
    ], lines


def test_wrong_config_also_refused_by_the_board_itself(tmp_path):
    # the firmware validates too (a board provisioned by hand): same lines, exit 2, no traceback
    p = tmp_path / "bad.json"
    p.write_text('{"version": 2, "board": "sim"}')
    mp = peers.micropython()
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware"), SIPLING_CONFIG=str(p),
               SIPLING_BOARD=os.path.join(ROOT, "boards/sim/board.json"))
    r = subprocess.run([mp, os.path.join(ROOT, "firmware/main.py")], capture_output=True, text=True,
                       env=env, timeout=30)
    assert r.returncode == 2
    assert "Traceback" not in r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "sipling: %s: version: must be 1, got 2" % p
    assert all(ln.startswith("sipling: %s: " % p) for ln in r.stdout.splitlines())


def test_unknown_board_and_check_only(tmp_path):
    p = tmp_path / "dev.json"
    p.write_text('{"version": 1, "board": "sim", "identity": {"aor": "sip:door@example.test", "password": "x"},'
                 ' "proxy": {"host": "127.0.0.1"}, "owners": ["sip:alice@example.test"],'
                 ' "secagree": {"mechanisms": ["digest"], "require_ipsec": false}}')
    r = subprocess.run([sys.executable, "-m", "sipling_host", "sim", "--config", str(p), "--board", "nosuch"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    boards = sorted(n for n in os.listdir(os.path.join(ROOT, "boards"))
                    if os.path.isfile(os.path.join(ROOT, "boards", n, "board.json")))
    assert r.stderr.strip() == "sipling: no board named nosuch; choose one of %s" % ", ".join(boards)
    r = subprocess.run([sys.executable, "-m", "sipling_host", "sim", "--config", str(p), "--check"],
                       capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0 and r.stdout.strip() == "sipling: %s is valid" % p


def test_esp32_board_description_runs_in_memory_on_the_sim(tmp_path):
    p = tmp_path / "dev.json"
    port = free_port(3)
    p.write_text('{"version": 1, "board": "sim", "identity": {"aor": "sip:door@example.test", "password": "x"},'
                 ' "proxy": {"host": "127.0.0.1", "port": %d}, "local": {"port_c": %d, "port_s": %d},'
                 ' "owners": ["sip:alice@example.test"], "secagree": {"mechanisms": ["digest"], "require_ipsec": false}}'
                 % (port, port + 1, port + 2))
    r = subprocess.run([sys.executable, "-m", "sipling_host", "sim", "--config", str(p), "--board", "esp32-generic"],
                       input="press button\nstatus\nquit\n", capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "local.host 0.0.0.0 -> 127.0.0.1" in r.stderr  # loopback only by default
    assert "INFO app: board esp32-generic" in r.stdout
    assert "ok pressed button" in r.stdout
    assert "INFO event: event button pressed -> 1 owner(s)" in r.stdout
