"""The real device app (firmware/main.py on the MicroPython unix port behind a pty, as
`sipling sim --pty` runs it) takes a new config from `sipling provision` while it runs:
the frames share the console with typed commands, the commit de-registers the running app
and restarts it with the new config (key rotation), and the console keeps answering."""
import json
import os
import shutil
import tempfile

import pytest

from sipling_host import cli
from sipling_host.ptyboard import PtyBoard
from sipling_host.serialport import open_port

import peers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def device():
    d = tempfile.mkdtemp(prefix="sipling-prov-e2e-")
    fs = os.path.join(d, "fs")
    os.makedirs(fs)
    proxy, pc, ps, pc2, ps2, encap = peers.distinct_free_udp_ports(6)
    cfg = {"version": 1, "board": "sim",
           "identity": {"aor": "sip:door@example.test", "password": "old-password-1"},
           "proxy": {"host": "127.0.0.1", "port": proxy, "domain": "example.test"},
           "local": {"host": "127.0.0.1", "port_c": pc, "port_s": ps},
           "secagree": {"mechanisms": ["digest"], "require_ipsec": False}, "owners": ["sip:alice@example.test"]}
    with open(os.path.join(fs, "sipling.json"), "w") as f:
        json.dump(cfg, f)
    shutil.copy(os.path.join(ROOT, "boards/sim/board.json"), os.path.join(fs, "board.json"))
    b = PtyBoard(os.path.join(ROOT, "firmware/main.py"), cwd=fs, link=os.path.join(d, "board.tty"),
                 interactive=False)
    b.start()
    try:
        yield b, d, proxy, (pc2, ps2, encap)
    finally:
        b.stop()
        shutil.rmtree(d, ignore_errors=True)


def console(port, line, want):
    ser = open_port(port, timeout=0.05)
    try:
        ser.write(line.encode() + b"\r")
        got = b""
        for _ in range(200):
            got += ser.read(256)
            if want.encode() in got:
                break
        return got.decode(errors="replace")
    finally:
        ser.close()


def test_provision_while_running_restarts_app_with_new_config(device):
    b, d, proxy, (pc2, ps2, encap) = device
    b.wait_output(b"INFO app: board sim, identity sip:door@example.test", timeout=10)
    # nobody answers on the proxy port: the device retries (Timer E), the console still works
    assert "status: sip registering" in console(b.path, "status", "status:")
    mark = len(b.output)
    rc = cli.main(["provision", "--port", b.path, "--aor", "sip:door@example.test",
                   "--proxy", "127.0.0.1:%d" % proxy, "--owner", "sip:bob@example.test",
                   "--mechanisms", "digest", "--allow-digest", "--port-c", str(pc2), "--port-s", str(ps2),
                   "--encap-port", str(encap), "--out-bundle", os.path.join(d, "bundles"), "--no-repl"])
    assert rc == 0
    b.wait_output(b"new config committed: de-registering to restart with it", start=mark, timeout=10)
    b.wait_output(b"INFO app: stopped", start=mark, timeout=10)
    i = b.wait_output(b"INFO app: board sim, identity sip:door@example.test", start=mark, timeout=10)
    with open(os.path.join(b.cwd, "sipling.json")) as f:
        new = json.load(f)
    assert new["owners"] == ["sip:bob@example.test"]
    assert new["local"]["port_c"] == pc2
    assert new["identity"]["password"] != "old-password-1"
    out = bytes(b.output[mark:]).decode(errors="replace")
    # secrets never cross the console
    assert new["identity"]["password"] not in out and "old-password-1" not in out
    assert "status: sip registering" in console(b.path, "status", "status:")
    assert b.alive()
