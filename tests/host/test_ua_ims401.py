"""IMS flavour of the agreement (3GPP TS 24.229 5.1.1.5; RFC 3329 2.3.1 lets a 401 start it):
the real simulated board (`sipling sim`) registers through `sipling edge --challenge 401`
(401 carrying a Digest challenge AND Security-Server) and Kamailio, over ESP-in-UDP.

- the protected REGISTER answers the Digest challenge: the edge checks it (RFC 2617 3.2.2,
  403 and a `bad-digest` drop when wrong, a log line when absent), and this test checks the
  Authorization it finds in the board's SIP trace against the password on its own (MD5
  here, not sipling.sip.digest);
- a board holding a wrong password is refused by the edge (403, bad-digest) and does not
  register.
"""
import argparse
import base64
import hashlib
import json
import os
import shutil
import signal
import sys
import time

import pytest

import sipling_host  # noqa: F401
from sipling_host import provision
from sipling_host.demo import Proc
from sipling_host.edge_kamailio import Kamailio, find_kamailio, free_udp_port

H = "127.0.0.1"


def _mp_available():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    for c in (os.environ.get("MICROPYTHON"), os.path.join(root, ".venv", "bin", "micropython"),
              shutil.which("micropython")):
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return True
    return False


pytestmark = pytest.mark.skipif(not (find_kamailio() and _mp_available()),
                                reason="kamailio and the MicroPython unix port are needed (make setup)")


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ims401")
    bundles = tmp / "bundles"
    bundles.mkdir()
    kport = free_udp_port()
    ports = {"sip": free_udp_port(), "encap": free_udp_port(), "inner": free_udp_port()}
    kam = Kamailio(kport, edge_addr=H, edge_port=ports["inner"]).start()
    edge = Proc("edge401", [
        sys.executable, "-m", "sipling_host", "edge", "--bundles", str(bundles), "--challenge", "401",
        "--realm", "ims.test", "--sip-port", str(ports["sip"]), "--encap-port", str(ports["encap"]),
        "--inner-port", str(ports["inner"]), "--proxy", "%s:%d" % (H, kport)])
    sims = []
    try:
        assert edge.wait_for("listening", 10), edge.lines
        yield tmp, bundles, ports, edge, sims
    finally:
        for s in sims:
            s.stop(grace=3)
        edge.stop()
        kam.cleanup()


def _device(rig, name, password_on_board=None):
    """Config + bundle for sip:<name>@example.test (ipsec-3gpp only, SIP trace on)."""
    tmp, bundles, ports, edge, _ = rig
    p = argparse.ArgumentParser()
    provision.add_arguments(p)
    args = p.parse_args([
        "--port", "none", "--aor", "sip:%s@example.test" % name, "--owner", "sip:alice@example.test",
        "--proxy", "%s:%d" % (H, ports["sip"]), "--mechanisms", "ipsec-3gpp",
        "--port-c", str(free_udp_port()), "--port-s", str(free_udp_port()),
        "--encap-port", str(free_udp_port())])
    cfg, bundle = provision.build(args)
    for ip in (cfg["ipsec"], bundle["ipsec"]):
        ip["algs"] = [["hmac-sha-1-96", "aes-cbc"]]
        ip["peer_encap_port"] = ports["encap"]
    cfg["log"] = dict(cfg.get("log") or {}, trace_sip=True)
    if password_on_board is not None:
        cfg["identity"]["password"] = password_on_board
    path = tmp / ("%s.json" % name)
    path.write_text(json.dumps(cfg))
    mark = len(edge.lines)
    provision.write_bundle(str(bundles), bundle)
    os.kill(edge.p.pid, signal.SIGHUP)
    for _ in range(100):
        if any("bundle loaded: sip:%s@" % name in x for x in edge.lines[mark:]):
            break
        time.sleep(0.05)
    return str(path), cfg


def _sim(rig, path):
    s = Proc("board", [sys.executable, "-m", "sipling_host", "sim", "--config", path], stdin=True)
    rig[4].append(s)
    return s


def _traced(lines, direction):
    """SIP messages from TRACE lines: `<ms> TRACE in|out udp src dst base64`."""
    out = []
    for line in lines:
        w = line.split()
        if "TRACE" in w:
            i = w.index("TRACE")
            if w[i + 1] == direction:
                out.append(base64.b64decode(w[i + 5]))
    return out


def _headers(msg):
    head = msg.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    h = {}
    for line in head[1:]:
        k, _, v = line.partition(b":")
        h.setdefault(k.strip().lower(), []).append(v.strip())
    return head[0], h


def _params(v):
    # Digest k=v, k="v" (values without commas in both the edge's challenge and our answer)
    assert v[:7].lower() == b"digest "
    out = {}
    for part in v[7:].split(b","):
        k, _, x = part.strip().partition(b"=")
        out[k.lower()] = x.strip(b'"')
    return out


def _md5(*parts):
    return hashlib.md5(b":".join(parts)).hexdigest().encode()


def test_protected_register_answers_the_401_digest_challenge(rig):
    edge = rig[3]
    path, cfg = _device(rig, "porch")
    mark = len(edge.lines)
    sim = _sim(rig, path)
    assert sim.wait_for(r"registered as sip:porch@example\.test .* via ipsec-3gpp", 30), sim.lines[-8:]
    assert "from 401" in "\n".join(sim.lines)
    text = "\n".join(edge.lines[mark:])
    assert "agreed ipsec-3gpp" in text, text[-2000:]
    assert "no Digest answer" not in text and "drop (" not in text, text[-2000:]

    # the 401 the board got (plain, before the agreement) and its protected REGISTER
    chal = [m for m in _traced(sim.lines, "in") if m.startswith(b"SIP/2.0 401 ")]
    assert chal, sim.lines[-20:]
    _, h401 = _headers(chal[0])
    assert h401.get(b"security-server")
    c = _params(h401[b"www-authenticate"][0])
    regs = [_headers(m) for m in _traced(sim.lines, "out") if m.startswith(b"REGISTER ")]
    prot = [(first, h) for first, h in regs if b"security-verify" in h]
    assert prot, [first for first, _ in regs]
    first, h = prot[0]
    assert h[b"security-verify"] == h401[b"security-server"]
    a = _params(h[b"authorization"][0])
    pw = cfg["identity"]["password"].encode()
    user = cfg["identity"]["auth_user"].encode()
    assert a[b"username"] == user and a[b"realm"] == c[b"realm"] == b"ims.test"
    assert a[b"nonce"] == c[b"nonce"] and a[b"qop"] == b"auth"
    uri = first.split(b" ")[1]
    assert a[b"uri"] == uri
    # RFC 2617 3.2.2.1, qop=auth, MD5
    want = _md5(_md5(user, b"ims.test", pw), a[b"nonce"], a[b"nc"], a[b"cnonce"], b"auth", _md5(b"REGISTER", uri))
    assert a[b"response"] == want
    sim.send("quit")
    assert sim.stop(grace=5) == 0


def test_wrong_password_on_the_board_is_refused_by_the_edge(rig):
    edge = rig[3]
    path, _ = _device(rig, "shed", password_on_board="not-the-bundle-password")
    mark = len(edge.lines)
    sim = _sim(rig, path)
    line = sim.wait_for(r"registration failed \(403 ", 30)
    assert line, sim.lines[-8:]
    assert "registered as" not in "\n".join(sim.lines)
    assert edge.wait_for(r"drop \(bad-digest\): wrong digest response", 1) or \
        "drop (bad-digest): wrong digest response" in "\n".join(edge.lines[mark:])
    sim.send("quit")
    sim.stop(grace=5)
