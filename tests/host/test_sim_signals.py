"""`sipling sim --config` under `kill` (issue 10 finding 8): SIGTERM stops the firmware
process too and removes the temporary copy of the config (keys and passwords inside)."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import peers
from sipling_host import provision

pytestmark = pytest.mark.skipif(not peers.has_micropython(), reason="the MicroPython unix port is needed")


def _children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def test_sigterm_stops_the_board_and_leaves_no_secrets_behind(tmp_path):
    ap = argparse.ArgumentParser()
    provision.add_arguments(ap)
    c, s, e, dead = peers.distinct_free_udp_ports(4)
    a = ap.parse_args(["--port", "x", "--aor", "sip:door@example.test", "--proxy", "127.0.0.1:%d" % dead,
                       "--owner", "sip:alice@example.test", "--port-c", str(c), "--port-s", str(s),
                       "--encap-port", str(e)])
    cfg, _ = provision.build(a)
    path = tmp_path / "door.json"
    path.write_text(json.dumps(cfg))
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    env = dict(os.environ, TMPDIR=str(tmpdir))
    p = subprocess.Popen([sys.executable, "-m", "sipling_host", "sim", "--config", str(path)], env=env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        end = time.monotonic() + 20
        kids = []
        while time.monotonic() < end and not kids:
            kids = _children(p.pid)
            time.sleep(0.1)
        assert kids, "the firmware process did not start"
        assert os.listdir(tmpdir), "the temporary copy of the config was expected there"
        time.sleep(1.0)
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=15)
    finally:
        if p.poll() is None:
            p.kill()
    assert "Traceback" not in out, out
    assert os.listdir(tmpdir) == [], os.listdir(tmpdir)
    for k in kids:
        assert not os.path.exists("/proc/%d" % k) or open("/proc/%d/stat" % k).read().split()[2] == "Z", k
    assert (tmp_path / "door.state").is_dir()
