"""`sipling provision` and `sipling logs` against the real firmware (firmware/main.py) on
the MicroPython unix port behind a pty, as `sipling sim --pty` runs it: a fresh board with
no config, its first boot with the provisioned config, its SIP traces as a pcap, and a key
rotation while the app runs."""
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from sipling import config as devcfg
from sipling_host import cli
from sipling_host.paths import ROOT, firmware_dir
from sipling_host.ptyboard import PtyBoard

FIRMWARE = firmware_dir()

from peers import micropython

PORTS = {"proxy": 35060, "c": 35062, "s": 35064}


def _text(path):
    return path.read_text() if path.exists() else ""


def _until(pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def _board(tmp_path):
    env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen",
               SIPLING_CONFIG=str(tmp_path / "sipling.json"),
               SIPLING_BOARD=os.path.join(ROOT, "boards", "sim", "board.json"))
    return PtyBoard(argv=[micropython(), os.path.join(FIRMWARE, "main.py")], env=env,
                    cwd=str(tmp_path / "fs"), link=str(tmp_path / "board.tty"))


def _config_bytes(owner):
    """A config as `sipling provision` makes it (fresh secrets), for a board set up directly."""
    import argparse
    from sipling_host import provision
    ap = argparse.ArgumentParser()
    provision.add_arguments(ap)
    a = ap.parse_args(["--port", "x", "--aor", "sip:door@example.test", "--proxy", "127.0.0.1:%d" % PORTS["proxy"],
                       "--owner", owner, "--port-c", str(PORTS["c"]), "--port-s", str(PORTS["s"]),
                       "--mechanisms", "ipsec-man,digest", "--allow-digest", "--trace-sip"])
    return provision.config_bytes(provision.build(a)[0])


def _provision(port, bundles, *extra):
    return cli.main(["provision", "--port", port, "--aor", "sip:door@example.test",
                     "--proxy", "127.0.0.1:%d" % PORTS["proxy"], "--owner", "sip:alice@example.test",
                     "--port-c", str(PORTS["c"]), "--port-s", str(PORTS["s"]),
                     "--mechanisms", "digest", "--allow-digest", "--trace-sip", "--out-bundle", str(bundles)] + list(extra))


def test_fresh_firmware_board_provisioned_booted_logged(tmp_path, capfd):
    if not shutil.which("tshark"):
        pytest.skip("tshark not installed (apt-get install tshark)")
    cfgfile = tmp_path / "sipling.json"
    with _board(tmp_path) as b:
        # main.py: no config file, waits for `sipling provision` on its console (no REPL detour)
        b.wait_output(b"waiting for `sipling provision`")
        assert _provision(b.path, tmp_path / "bundles", "--timeout", "0.2") == 0
        out, err = capfd.readouterr()
        assert err == ""
        assert "config none (fresh board)" in out and "no app answering" not in out
        b.wait_output(b"config committed: starting")  # the app starts by itself after the commit
        b.wait_output(b" TRACE out udp ", timeout=10)
        raw = cfgfile.read_bytes()
        cfg, problems = devcfg.load(str(cfgfile))   # the firmware's own validator
        assert problems == []
        bundle = json.loads((tmp_path / "bundles" / "door@example.test.json").read_text())
        assert bundle["config_sha256"] == hashlib.sha256(raw).hexdigest()
        assert cfg["identity"]["password"] == bundle["device"]["password"]

        pcap, logf = tmp_path / "sip.pcap", tmp_path / "board.log"
        proc = subprocess.Popen([sys.executable, "-m", "sipling_host", "logs", "--port", b.path,
                                 "--pcap", str(pcap), "--out", str(logf), "--color", "never"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        _until(lambda: b.send(b"status\r") or "status:" in _text(logf))   # logs is attached
        b.restart()                                   # boots again with the provisioned config
        _until(lambda: " TRACE -> " in _text(logf))
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
        assert r.returncode == 0, r.stderr
        assert "-> 127.0.0.1:%d udp REGISTER sip:example.test SIP/2.0" % PORTS["proxy"] in r.stdout
        assert bundle["device"]["password"] not in r.stdout
        rows = subprocess.run(["tshark", "-r", str(pcap), "-Y", "sip.Method == \"REGISTER\"", "-T", "fields",
                               "-e", "sip.Security-Client", "-e", "udp.dstport"],
                              capture_output=True, text=True, timeout=60).stdout.splitlines()
        assert rows and rows[0].split("\t") == ["digest", str(PORTS["proxy"])]


def test_key_rotation_on_the_running_firmware(tmp_path, capfd):
    (tmp_path / "sipling.json").write_bytes(_config_bytes("sip:alice@example.test"))
    with _board(tmp_path) as b:
        first = (tmp_path / "sipling.json").read_bytes()
        b.wait_output(b" TRACE out udp ", timeout=10)   # the app runs and registers
        capfd.readouterr()
        mark = len(b.output)
        assert _provision(b.path, tmp_path / "b2") == 0
        out, err = capfd.readouterr()
        assert err == ""
        # the running app answered on its console (no detour through the REPL) and restarts
        # itself with the new config: it registers again, the process never left the app
        assert "no app answering" not in out
        after = len(b.output)
        b.wait_output(b" TRACE out udp ", start=after, timeout=10)
        assert b">>> " not in b.output[mark:]
        second = (tmp_path / "sipling.json").read_bytes()
        assert second != first
        assert "config sha256 %s..." % hashlib.sha256(first).hexdigest()[:16] in out
        assert devcfg.load(str(tmp_path / "sipling.json"))[1] == []
        c1, c2 = json.loads(first), json.loads(second)
        k2 = json.loads((tmp_path / "b2" / "door@example.test.json").read_text())
        assert c2["identity"]["password"] == k2["device"]["password"] != c1["identity"]["password"]
        assert c2["ipsec_man"]["ik"] == k2["ipsec_man"]["ik"] != c1["ipsec_man"]["ik"]
        assert b.alive()


def test_mpremote_copies_onto_the_running_firmware(tmp_path):
    (tmp_path / "sipling.json").write_bytes(_config_bytes("sip:alice@example.test"))
    src = tmp_path / "extra.py"
    src.write_text("print('extra module', 6 * 7)\n")
    exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
    if not os.path.exists(exe):
        pytest.skip("mpremote not installed (pip install mpremote)")
    with _board(tmp_path) as b:
        b.wait_output(b" TRACE out udp ", timeout=10)   # the app runs
        r = subprocess.run([exe, "connect", b.path, "resume", "fs", "cp", str(src), ":extra.py",
                            "+", "exec", "import extra"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "extra module 42" in r.stdout
        assert (tmp_path / "fs" / "extra.py").read_text() == src.read_text()
