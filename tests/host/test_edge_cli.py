"""`sipling edge` as a user meets it: one line per mistake, exit 1, no traceback."""
import socket
import subprocess
import sys

from sipling_host.edge_kamailio import free_udp_port


def _edge(*args, timeout=20):
    return subprocess.run([sys.executable, "-m", "sipling_host", "edge"] + list(args),
                          capture_output=True, text=True, timeout=timeout)


def test_missing_bundle_directory(tmp_path):
    r = _edge("--bundles", str(tmp_path / "nope"))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "sipling: --bundles %s: no such directory; create it and put the device bundles from "
        "`sipling provision` in it" % (tmp_path / "nope")]


def test_port_taken_is_one_line(tmp_path):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        r = _edge("--bundles", str(tmp_path), "--sip-port", str(port), "--encap-port", str(free_udp_port()),
                  "--inner-port", str(free_udp_port()))
    finally:
        s.close()
    assert r.returncode == 1
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipling: SIP (devices) port 127.0.0.1:%d is taken" % port)


def test_bad_proxy_address(tmp_path):
    r = _edge("--bundles", str(tmp_path), "--proxy", "127.0.0.1:notaport")
    assert r.returncode == 1 and "expected HOST:PORT" in r.stderr and "Traceback" not in r.stderr
