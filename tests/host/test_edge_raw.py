"""`sipling edge --raw`: ESP directly in IP (protocol 50) on a raw socket; root only.

The device side is scripted from the firmware cores on 127.0.0.2 with its own raw socket;
the proxy is a scripted UDP registrar that answers 200.
"""
import json
import os
import select
import socket
import subprocess
import sys
import time

import pytest

import sipling_host  # noqa: F401
from sipling.sip.message import response
from sipling.sip.parser import parse
from sipling_host.edge_kamailio import free_udp_port

from edge_scripted import Device, device_json

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
IK, CK = os.urandom(16), os.urandom(16)
DEV = "127.0.0.2"


def test_raw_esp_register_through_edge(tmp_path):
    bundles = tmp_path / "b"
    bundles.mkdir()
    cfg = device_json(IK, CK, [("hmac-sha-1-96", "aes-cbc")])
    cfg["ipsec"]["carrier"] = "raw"
    cfg["local"]["host"] = DEV
    (bundles / "door.json").write_text(json.dumps(cfg))
    proxy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    proxy.bind(("127.0.0.1", 0))
    proxy.settimeout(5)
    sip = free_udp_port()
    edge = subprocess.Popen([sys.executable, "-m", "sipling_host", "edge", "--bundles", str(bundles), "--raw",
                             "--sip-port", str(sip), "--encap-port", str(free_udp_port()),
                             "--inner-port", str(free_udp_port()),
                             "--proxy", "127.0.0.1:%d" % proxy.getsockname()[1]],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    raw.bind((DEV, 0))
    raw.settimeout(5)
    plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    plain.bind((DEV, 0))
    plain.settimeout(5)
    head = []
    try:
        # the edge says when its sockets are bound; a fixed sleep was flaky on a loaded machine
        deadline = time.time() + 15
        while time.time() < deadline and not any("listening" in ln for ln in head):
            if select.select([edge.stdout], [], [], 0.2)[0]:
                ln = edge.stdout.readline()
                if not ln:
                    break
                head.append(ln)
        assert any("listening" in ln for ln in head), head
        dev = Device(IK, CK, [("hmac-sha-1-96", "aes-cbc")], host=DEV)
        plain.sendto(dev.first_register(("ipsec-3gpp",)), ("127.0.0.1", sip))
        dev.choose(plain.recv(65535), "ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
        raw.sendto(dev.protected_request(b"REGISTER"), ("127.0.0.1", 0))
        data, addr = proxy.recvfrom(65535)
        req = parse(data)
        assert req.method == b"REGISTER" and req.get("Path")
        proxy.sendto(response(req, 200, b"OK", [(b"Contact", b"<sip:door@127.0.0.2:5064>;expires=600")],
                              to_tag=b"p").serialize(), addr)
        while True:  # our raw socket also sees the packets we sent
            pkt, src = raw.recvfrom(65535)
            if src[0] == "127.0.0.1":
                break
        ihl = (pkt[0] & 0x0F) * 4
        _, _, r = dev.open(pkt[ihl:])
        assert r.status == 200
    finally:
        edge.terminate()
        out = "".join(head) + edge.communicate(timeout=5)[0]
        for s in (raw, plain, proxy):
            s.close()
    assert "raw ESP" in out and "agreed ipsec-3gpp" in out, out
