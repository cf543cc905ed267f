"""`make demo` (python -m sipling_host.demo): exit 0, readable output, nothing left running,
and one clear line when a port is taken."""
import os
import random
import re
import socket
import subprocess
import sys

import pytest

from sipling_host.edge_kamailio import find_kamailio, port_free

OFFSETS = (0, 1, 2, 4, 10, 20, 21)


def _free_base():
    for _ in range(200):
        base = random.randrange(20000, 40000, 100)
        if all(port_free("127.0.0.1", base + o) for o in OFFSETS):
            return base
    pytest.skip("no free port range for the demo")


def _procs_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if text.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def _demo(base, timeout=120):
    env = dict(os.environ, SIPLING_DEMO_BASE=str(base))
    return subprocess.run([sys.executable, "-m", "sipling_host.demo"], env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.skipif(find_kamailio() is None, reason="kamailio not installed (make setup)")
def test_demo_runs_and_leaves_nothing_behind():
    pytest.importorskip("pjsua2")
    base = _free_base()
    r = _demo(base)
    assert r.returncode == 0, (r.stdout, r.stderr)
    out = r.stdout
    assert "remote  > status   (200)" in out
    assert "remote  > set relay on   (200)" in out
    assert "door    < ok relay=on" in out
    assert "board console says: status: sip registered via ipsec-3gpp" in out and "relay=on" in out
    assert "agreed ipsec-3gpp alg=hmac-sha-1-96 ealg=aes-cbc" in out
    tmp = out.split("device config ", 1)[1].split("/door.json", 1)[0]
    assert not os.path.exists(tmp)
    assert _procs_mentioning(tmp) == []
    assert all(port_free("127.0.0.1", base + o) for o in OFFSETS)
    # no key material in what the user sees
    assert not re.search(r"[0-9a-f]{32}", out + r.stderr)


def test_demo_says_in_one_line_when_a_port_is_taken():
    base = _free_base()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", base + 10))
    try:
        r = _demo(base, timeout=30)
    finally:
        s.close()
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "port %d (Kamailio) is already in use" % (base + 10) in lines[0], r.stderr
