"""The README's board quick start, run as shown against the simulated board.

The shell blocks marked `<!-- quickstart:sim -->` and `<!-- quickstart:sim-check -->` in
README.md are parsed and run line by line from the repository root (the long-running ones,
Kamailio, the edge, the board and the log relay, in the background), with only these
substitutions, all listed in SUBSTITUTE: `run/` becomes a temporary directory and the four
UDP ports a test must not assume free (edge SIP 5060, Kamailio 5070, ESP-in-UDP 4500/4501)
become free ones. Then the outcome is checked: the board registered through the edge and
Kamailio, a real UA (pjsua2) got the answers to `status` and `set relay on`, tshark decodes
the board's pcap as SIP, the board keeps its keys across a restart, and `sipling sim --check`
prints one line per problem of a broken config.

Every `sipling <command> --option` anywhere in README.md (the real-board commands too) must
be accepted by the argument parser, and whole command lines in its shell blocks must parse.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time

import pytest

from sipling_host import cli
from sipling_host.edge_kamailio import find_kamailio, free_udp_port, port_free

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
README = os.path.join(ROOT, "README.md")
BIN = os.path.dirname(sys.executable)

LONG_RUNNING = ("kamailio ", "sipling edge ", "sipling sim ", "sipling logs ")
PORTS = (5060, 5070, 4500, 4501)         # the ones written in the walkthrough
IMPLICIT_PORTS = (5059, 5062, 5064)      # defaults it relies on: edge inner, board port-c/port-s


def _readme():
    with open(README) as f:
        return f.read()


def block(name):
    """The text of the ```sh block right after `<!-- quickstart:NAME -->`."""
    text = _readme()
    mark = "<!-- quickstart:%s -->" % name
    i = text.index(mark) + len(mark)
    start = text.index("```sh\n", i)
    assert text[i:start].strip() == "", "the marker must sit right above its block"
    start += len("```sh\n")
    return text[start:text.index("```", start)]


def commands(text):
    """Command lines of a shell block: comments and blank lines dropped, `\\` continuations
    joined, trailing `# comments` cut."""
    out, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        out.append(_strip_comment(cur).strip())
        cur = ""
    return out


def _strip_comment(cmd):
    """cmd without a trailing ` # comment` (a # inside quotes stays)."""
    quote = None
    for i, c in enumerate(cmd):
        if quote:
            if c == quote:
                quote = None
        elif c in "'\"":
            quote = c
        elif c == "#" and (i == 0 or cmd[i - 1].isspace()):
            return cmd[:i]
    return cmd


def substitute(cmd, subs):
    """SUBSTITUTE applied to one command: `run/` -> temp dir, whole port numbers -> free ones."""
    cmd = cmd.replace("$PWD/run/", subs["run/"]).replace("run/", subs["run/"])
    for old, new in subs["ports"].items():
        cmd = re.sub(r"(?<![\d.])%d(?![\d.])" % old, str(new), cmd)
    return cmd


# --- every sipling option in README.md exists ------------------------------------------

def _subparsers():
    p = cli.build_parser()
    for a in p._actions:
        if a.__class__.__name__ == "_SubParsersAction":
            return a.choices
    raise AssertionError("no sub-commands in sipling's parser")


def _readme_sipling_mentions(text=None):
    """(command, [tokens]) for each `sipling <cmd> ...` in README.md (or `text`), continuations joined."""
    text = (_readme() if text is None else text).replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        for m in re.finditer(r"\bsipling +([a-z][a-z-]*[a-z]|[a-z])((?: +[^\s`#)]+)*)", line):
            out.append((m.group(1), m.group(2).split()))
    return out


DOCS = ("docs/edge.md", "docs/config.md", "boards/README.md")


def test_every_sipling_option_in_the_readme_is_accepted():
    _check_mentions(_readme_sipling_mentions(), 15)


def test_every_sipling_option_in_the_other_docs_is_accepted():
    text = ""
    for rel in DOCS:
        with open(os.path.join(ROOT, rel)) as f:
            text += f.read() + "\n"
    _check_mentions(_readme_sipling_mentions(text), 5)


def _check_mentions(mentions, at_least):
    subs = _subparsers()
    assert len(mentions) > at_least
    bad = []
    for cmd, toks in mentions:
        if cmd not in subs:
            if cmd in ("command", "edge's"):   # prose: "the `sipling` command"
                continue
            bad.append("sipling %s: no such command" % cmd)
            continue
        known = subs[cmd]._option_string_actions
        for t in toks:
            if t.startswith("--") and t.split("=")[0] not in known:
                bad.append("sipling %s %s: unknown option" % (cmd, t))
    assert bad == [], bad


def test_whole_readme_command_lines_parse():
    text = _readme()
    lines = []
    for m in re.finditer(r"```sh\n(.*?)```", text, re.S):
        lines += [c for c in commands(m.group(1)) if c.startswith("sipling ")]
    assert len(lines) >= 12
    parser = cli.build_parser()
    for line in lines:
        argv = shlex.split(line, comments=True)[1:]
        try:
            args = parser.parse_args(argv)
        except SystemExit:
            raise AssertionError("README command does not parse: %s" % line)
        assert args.command == argv[0]


def test_quickstart_blocks_are_what_the_run_test_expects():
    sim = commands(block("sim"))
    starts = [c.split()[0] + (" " + c.split()[1] if c.startswith("sipling ") else "") for c in sim]
    assert starts == ["mkdir", "sipling proxy-user", "kamailio", "sipling edge", "sipling sim", "sipling provision",
                      "sipling logs", "python", "tshark"], starts
    assert [c.split()[:3] for c in commands(block("sim-check"))] == [["sipling", "sim", "--check"]] * 2


# --- the walkthrough, run ----------------------------------------------------------------

def _env():
    return dict(os.environ, PATH=os.pathsep.join([BIN, "/usr/sbin", os.environ.get("PATH", "")]),
                PYTHONUNBUFFERED="1")


class Background:
    def __init__(self, cmd, out):
        self.cmd = cmd
        self.out = out
        with open(out, "wb") as f:
            self.p = subprocess.Popen(["bash", "-c", cmd], cwd=ROOT, env=_env(), stdout=f,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)

    def text(self):
        with open(self.out, errors="replace") as f:
            return f.read()

    def wait_text(self, needle, timeout=20):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if needle in self.text():
                return
            if self.p.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError("%r did not print %r; it printed:\n%s" % (self.cmd, needle, self.text()[-3000:]))

    def stop(self, sig=signal.SIGTERM):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, sig)
                self.p.wait(8)
            except subprocess.TimeoutExpired:
                os.killpg(self.p.pid, signal.SIGKILL)
                self.p.wait(5)
            except ProcessLookupError:
                pass
        try:
            os.killpg(self.p.pid, signal.SIGKILL)   # anything left in its group
        except (ProcessLookupError, PermissionError):
            pass


def _run(cmd, timeout=60):
    return subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=timeout)


def _until(pred, timeout, what):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % what)


def _read_console_until(link, needle, timeout=15):
    """Read the board's port until `needle` shows (the boot banner; a user sees it too)."""
    _until(lambda: os.path.exists(link), timeout, "the board's port %s" % link)
    fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    got = b""
    try:
        end = time.monotonic() + timeout
        while needle not in got and time.monotonic() < end:
            try:
                got += os.read(fd, 4096)
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        os.close(fd)
    assert needle in got, got[-500:]
    return got


def _prerequisites():
    if find_kamailio() is None:
        pytest.skip("kamailio not installed (apt-get install kamailio)")
    if not os.path.exists("/usr/bin/tshark") and subprocess.run(["which", "tshark"]).returncode:
        pytest.skip("tshark not installed (apt-get install tshark)")
    r = subprocess.run([sys.executable, "-c", "import pjsua2"], capture_output=True)
    if r.returncode:
        pytest.skip("pjsua2 missing: .venv/bin/pip install pjsua2-python")
    # the walkthrough relies on these defaults; another run of this very test may hold them
    end = time.monotonic() + 90
    while True:
        busy = [p for p in IMPLICIT_PORTS if not port_free("127.0.0.1", p)]
        if not busy or time.monotonic() > end:
            break
        time.sleep(0.5)
    assert not busy, "UDP ports %s on 127.0.0.1 are taken; the walkthrough uses them" % busy


def test_simulated_board_quickstart_as_written(tmp_path):
    _prerequisites()
    ports = {}
    while len(set(ports.values())) < len(PORTS):
        ports = {p: free_udp_port() for p in PORTS}
    subs = {"run/": str(tmp_path) + "/", "ports": ports}
    cmds = [substitute(c, subs) for c in commands(block("sim"))]
    bg = {}
    try:
        for i, cmd in enumerate(cmds):
            if cmd.startswith(LONG_RUNNING):
                name = cmd.split()[0] if cmd.startswith("kamailio") else cmd.split()[1]
                bg[name] = Background(cmd, str(tmp_path / ("%d-%s.out" % (i, name))))
                if name == "kamailio":
                    _until(lambda: not port_free("127.0.0.1", ports[5070]), 15, "Kamailio's port")
                elif name == "edge":
                    bg[name].wait_text("listening")
                elif name == "sim":
                    # the fresh board says it waits for provisioning on its console
                    _read_console_until(str(tmp_path / "door.tty"), b"waiting for `sipling provision`")
                elif name == "logs":
                    # what the user watches for before step 6
                    bg[name].wait_text("registered as sip:door@example.test", 40)
                continue
            r = _run(cmd, timeout=90)
            assert r.returncode == 0, "%s\n%s%s" % (cmd, r.stdout, r.stderr[-3000:])
            if cmd.startswith("sipling provision"):
                assert "config none (fresh board)" in r.stdout and "no app answering" not in r.stdout
                bundle = tmp_path / "bundles" / "door@example.test.json"
                assert bundle.exists()
                secret = json.loads(bundle.read_text())["device"]["password"]
            elif cmd.startswith("python -m sipling_host.edge_remote"):
                # the board registered through the edge (ipsec-3gpp) and Kamailio stored it
                edge = bg["edge"].text()
                assert "registration state: registered for 600 s via ipsec-3gpp" in edge, edge[-2000:]
                events = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
                sent = [(e["text"], e["code"]) for e in events if e["event"] == "sent"]
                replies = [e["text"] for e in events if e["event"] == "reply"]
                assert sent == [("status", 200), ("set relay on", 200)], r.stdout
                assert len(replies) == 2, r.stdout
                assert replies[0].startswith("ok ") and "relay=off" in replies[0] \
                    and "sip=registered_via_ipsec-3gpp" in replies[0], replies
                assert replies[1] == "ok relay=on"
            elif cmd.startswith("tshark"):
                # as shown: the SIP messages decoded (REGISTER, 494, 200, MESSAGEs)
                out = r.stdout
                assert "SIP" in out and "Request: REGISTER sip:example.test" in out, out
                assert "Status: 494 Security Agreement Required" in out, out
                assert "Status: 200 OK (REGISTER)" in out, out
                assert out.count("Request: MESSAGE") >= 3, out   # two commands in, two answers out
                fields = subprocess.run(["tshark", "-r", str(tmp_path / "door.pcap"), "-Y", "sip.Method",
                                         "-T", "fields", "-e", "sip.Method"], capture_output=True, text=True,
                                        timeout=60).stdout.split()
                assert {"REGISTER", "MESSAGE"} <= set(fields), fields
        logs = bg["logs"].text()
        assert "registered as sip:door@example.test" in logs, logs[-2000:]
        # issue 10 finding 10: what holds keys, passwords or traces is this user's only
        for f in ("door-fs/sipling.json", "door.pcap", "bundles/door@example.test.json", "alice.pw",
                  "users/subscriber"):
            mode = os.stat(str(tmp_path / f)).st_mode & 0o777
            assert mode == 0o600, (f, oct(mode))
        assert "command from alice@example.test (pai): set ok" in logs, logs[-2000:]
        assert secret not in logs and secret not in bg["sim"].text()

        # sim-check: the board's own config is valid; a broken one gives one line per problem
        check = [substitute(c, subs) for c in commands(block("sim-check"))]
        r = _run(check[0])
        assert r.returncode == 0 and r.stdout.strip() == "sipling: %s is valid" % (tmp_path / "door-fs" / "sipling.json"), r
        broken = tmp_path / "door.json"
        broken.write_text(json.dumps({"version": 1, "board": "sim", "identity": {"aor": "door"},
                                      "proxy": {"host": "proxy.lan", "port": 0}, "owners": []}))
        from sipling import config as devcfg
        _, problems = devcfg.load(str(broken))
        assert len(problems) >= 3
        r = _run(check[1])
        assert r.returncode == 1 and r.stdout == "" and "Traceback" not in r.stderr
        assert r.stderr.splitlines() == ["sipling: %s" % p for p in problems] + [
            "sipling: %s has %d problems; fix them and run again" % (broken, len(problems))]

        # the board keeps its files: stopped (power cut) and started again with the same
        # command, it registers with the keys it was provisioned with, no provisioning
        bg["logs"].stop(signal.SIGINT)
        bg["sim"].stop(signal.SIGINT)
        before = (tmp_path / "door-fs" / "sipling.json").read_bytes()
        mark = len(bg["edge"].text())
        sim_cmd = next(c for c in cmds if c.startswith("sipling sim "))
        bg["sim2"] = Background(sim_cmd, str(tmp_path / "sim2.out"))
        _until(lambda: bg["edge"].text().count("registration state: registered", mark) > 0, 30,
               "the restarted board to register again; edge: %s" % bg["edge"].text()[mark:][-1500:])
        assert (tmp_path / "door-fs" / "sipling.json").read_bytes() == before
    finally:
        for name in ("logs", "sim2", "sim", "edge", "kamailio"):
            if name in bg:
                bg[name].stop(signal.SIGINT if name in ("logs", "sim", "sim2") else signal.SIGTERM)


def test_sim_fs_mistakes_are_one_line_each(tmp_path):
    def sim(*a):
        return subprocess.run([sys.executable, "-m", "sipling_host", "sim"] + list(a), cwd=str(tmp_path),
                              capture_output=True, text=True, timeout=30)
    r = sim()
    assert r.returncode == 1 and r.stderr == (
        "sipling: give --config FILE, or --fs DIR for a board that keeps its files there "
        "(a board without a config waits for `sipling provision`)\n")
    # no config in DIR and no pty to provision it through: nothing is created
    r = sim("--fs", "fresh")
    assert r.returncode == 1 and r.stderr.startswith("sipling: %s has no config yet: run with --pty"
                                                      % (tmp_path / "fresh"))
    assert not (tmp_path / "fresh").exists()
    r = sim("--check", "--fs", "fresh")
    assert r.returncode == 1 and r.stderr == ("sipling: %s has no sipling.json yet; provision the board "
                                              "or give --config FILE\n" % (tmp_path / "fresh"))
    # the board's own config is validated, never rewritten; a non-loopback one is refused
    (tmp_path / "fs").mkdir()
    cfg = {"version": 1, "board": "sim", "identity": {"aor": "sip:door@example.test", "password": "pw"},
           "proxy": {"host": "127.0.0.1"}, "local": {"host": "192.0.2.7"}, "owners": ["sip:a@example.test"],
           "secagree": {"mechanisms": ["digest"], "require_ipsec": False}}
    (tmp_path / "fs" / "sipling.json").write_text(json.dumps(cfg))
    r = sim("--fs", "fs")
    assert r.returncode == 1 and r.stderr == (
        "sipling: %s: local.host is 192.0.2.7 but the simulated board binds to loopback; provision it "
        "with --local 127.0.0.1, or pass --public\n" % (tmp_path / "fs" / "sipling.json"))
    r = sim("--fs", "fs", "--board", "esp32-generic", "--check")
    assert r.returncode == 1 and "is for board sim; leave out --board esp32-generic" in r.stderr
    cfg["local"]["host"] = "127.0.0.1"
    (tmp_path / "fs" / "sipling.json").write_text(json.dumps(cfg))
    r = sim("--fs", "fs", "--check")
    assert r.returncode == 0 and r.stdout == "sipling: %s is valid\n" % (tmp_path / "fs" / "sipling.json")
