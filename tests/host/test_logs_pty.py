"""`sipling logs` on the firmware behind a pty: relays lines, survives unplug/replug, and
--pcap writes the board's SIP traces so tshark decodes them as SIP."""
import base64
import os
import signal
import shutil
import subprocess
import sys
import time

import pytest

from provhelp import board, boot_fp


def _tshark(pcap, *fields):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed (apt-get install tshark)")
    cmd = ["tshark", "-r", str(pcap), "-Y", "sip", "-T", "fields"]
    for f in fields:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [ln.split("\t") for ln in r.stdout.splitlines()]


def _wait_file(path, pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        text = path.read_text() if path.exists() else ""
        if pred(text):
            return text
        time.sleep(0.02)
    raise AssertionError("timed out waiting on %s: %r" % (path, text[-300:]))


def test_logs_survive_unplug_and_write_pcap(tmp_path):
    out, pcap, errf = tmp_path / "board.log", tmp_path / "sip.pcap", tmp_path / "stderr"
    with board("--beat", "40", "--traces", "--asyncio") as b:
        boot_fp(b, 0)
        with open(errf, "w") as ef:
            proc = subprocess.Popen(
                [sys.executable, "-m", "sipling_host", "logs", "--port", b.path, "--out", str(out),
                 "--pcap", str(pcap), "--color", "always"],
                stdout=subprocess.PIPE, stderr=ef, text=True)
            _wait_file(out, lambda t: t.count(" INFO beat: n=") >= 3)
            b.unplug()                      # cable pulled: the port disappears
            _wait_file(errf, lambda t: "waiting for it to come back" in t)
            time.sleep(0.2)                 # the board goes on logging meanwhile
            b.replug()                      # and comes back at the same path
            _wait_file(errf, lambda t: "is back" in t)
            seen = out.read_text().count(" INFO beat: n=")
            _wait_file(out, lambda t: t.count(" INFO beat: n=") >= seen + 3)
            proc.send_signal(signal.SIGINT)     # ^C: the normal way to stop it
            stdout, _ = proc.communicate(timeout=20)
        stderr = errf.read_text()
    assert proc.returncode == 0, stderr
    assert "sipling: lost %s; waiting for it to come back" % b.path in stderr
    assert "sipling: %s is back" % b.path in stderr
    lines = out.read_text().splitlines()
    beats = [int(ln.rsplit("n=", 1)[1]) for ln in lines if " INFO beat: n=" in ln]
    gap = [y for x, y in zip(beats, beats[1:]) if y != x + 1]
    assert len(beats) >= 6
    assert gap, "no lines missing while unplugged?"
    assert beats[-1] > gap[0], "no lines after the replug"
    # terminal output: time stamp, colours for levels, traces summarised
    assert "\033[36m" in stdout and " INFO beat: n=" in stdout
    assert "-> 127.0.0.1:5060 udp REGISTER sip:example.test SIP/2.0" in stdout
    # every trace line shown is one packet in the pcap, decoded as SIP by tshark
    n_traces = sum(1 for ln in lines if " TRACE " in ln)
    assert "sipling: %d SIP message(s) written to %s" % (n_traces, pcap) in stderr
    rows = _tshark(pcap, "sip.Method", "sip.Status-Code", "sip.Call-ID", "udp.srcport", "udp.dstport")
    assert len(rows) == n_traces >= 6
    regs = [r for r in rows if r[0] == "REGISTER"]
    oks = [r for r in rows if r[1] == "200"]
    assert len(regs) + len(oks) == len(rows)
    assert {tuple(r[3:]) for r in regs} == {("5064", "5060")}
    assert {tuple(r[3:]) for r in oks} == {("5060", "5064")}
    assert all(r[2].startswith("stub-") for r in rows)


def test_logs_never_show_provisioning_frames(tmp_path):
    out = tmp_path / "board.log"
    with board("--beat", "100") as b:
        boot_fp(b, 0)
        proc = subprocess.Popen(
            [sys.executable, "-m", "sipling_host", "logs", "--port", b.path, "--out", str(out),
             "--quiet"], stderr=subprocess.PIPE, text=True)
        _wait_file(out, lambda t: " INFO beat: n=" in t)      # the tool is reading
        from sipling.provision import frame
        b.send(frame.encode(frame.HELLO, 7) + b"status\n")   # straight into the console
        _wait_file(out, lambda t: "ok config none" in t)
        _wait_file(out, lambda t: t.count(" INFO beat: n=") >= 3)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    text = out.read_text()
    assert "ok config none reloads 0" in text
    assert "\x1e" not in text
    for ln in text.splitlines():
        # the HELLO reply went out on the console, but is not a log line
        assert '"proto"' not in ln
        word = ln.split(" ")[-1]
        try:
            assert b"proto" not in base64.b64decode(word, validate=True)
        except ValueError:
            pass


def test_logs_missing_port_and_wait(tmp_path):
    r = subprocess.run([sys.executable, "-m", "sipling_host", "logs", "--port", str(tmp_path / "nope")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stderr.startswith("sipling: port %s not found; is the board plugged in?" % (tmp_path / "nope"))
    r = subprocess.run([sys.executable, "-m", "sipling_host", "logs", "--port", str(tmp_path / "nope"),
                        "--wait", "--duration", "0.3"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert r.stderr == "sipling: waiting for %s (unplugged?)\n" % (tmp_path / "nope")
