"""`sipling edge` (the real command, real sockets) in front of a real Kamailio (edge.cfg),
with a scripted device built from the firmware cores and a real UA (pjsua2).

One Kamailio and one edge serve every case of this module; each (alg, ealg) pair is a fresh
negotiation of the same device, so the run also covers re-negotiation.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest

import sipling_host  # noqa: F401
from sipling.sip.message import request
from sipling.sip.parser import parse
from sipling_host.edge_kamailio import Kamailio, find_kamailio, free_udp_port

import peers
from edge_scripted import Device, device_json, man_section

PAIRS = [(a, e) for a in ("hmac-sha-1-96", "hmac-md5-96", "hmac-sha-256-128")
         for e in ("null", "aes-cbc", "des-ede3-cbc")]
IK = os.urandom(16)
CK = os.urandom(16)
MAN = man_section(os.urandom(16), os.urandom(16))
H = "127.0.0.1"


class Net:
    """The scripted device's sockets: plain SIP and ESP-in-UDP."""

    def __init__(self, edge):
        self.edge = edge
        self.plain = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.plain.bind((H, 0))
        self.esp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.esp.bind((H, 0))
        for s in (self.plain, self.esp):
            s.settimeout(5)

    def close(self):
        self.plain.close()
        self.esp.close()

    def plain_exchange(self, data):
        self.plain.sendto(data, (H, self.edge["sip"]))
        return self.plain.recv(65535)

    def send_esp(self, pkt):
        self.esp.sendto(pkt, (H, self.edge["encap"]))

    def recv_esp(self, dev, timeout=5):
        self.esp.settimeout(timeout)
        while True:
            pkt = self.esp.recv(65535)
            got = dev.open(pkt)
            if got is not None:
                return got, pkt


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    if find_kamailio() is None:
        pytest.skip("kamailio not installed (make setup installs it as root)")
    tmp = tmp_path_factory.mktemp("edge")
    bundles = tmp / "bundles"
    bundles.mkdir()
    (bundles / "door.json").write_text(json.dumps(device_json(IK, CK, PAIRS, MAN)))
    kport = free_udp_port()
    edge = {"sip": free_udp_port(), "encap": free_udp_port(), "inner": free_udp_port()}
    kam = Kamailio(kport, edge_addr=H, edge_port=edge["inner"]).start()
    log = open(tmp / "edge.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sipling_host", "edge", "--bundles", str(bundles), "--sip-port", str(edge["sip"]),
         "--encap-port", str(edge["encap"]), "--inner-port", str(edge["inner"]), "--proxy", "%s:%d" % (H, kport),
         "--state-dir", str(tmp / "state")], stdout=log, stderr=subprocess.STDOUT)
    for _ in range(100):
        log.seek(0)
        if "listening" in log.read():
            break
        time.sleep(0.05)
    st = {"kam": kam, "kport": kport, "edge": edge, "proc": proc, "log": log, "tmp": tmp}
    yield st
    proc.terminate()
    proc.wait(timeout=5)
    kam.cleanup()
    log.close()


def edge_log(stack):
    stack["log"].seek(0)
    return stack["log"].read()


def register(stack, dev, net, kind, alg=None, ealg=None):
    resp = net.plain_exchange(dev.first_register())
    dev.choose(resp, kind, alg, ealg)
    net.send_esp(dev.protected_request(b"REGISTER"))
    (sport, dport, r), _ = net.recv_esp(dev)
    return r


def message_via_kamailio(stack, body):
    """A MESSAGE from a plain UDP UA straight to Kamailio (the fast per-pair check)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((H, 0))
    me = s.getsockname()[1]
    m = request(b"MESSAGE", b"sip:door@example.test", [
        (b"Via", b"SIP/2.0/UDP %s:%d;branch=z9hG4bK-ua%d;rport" % (H.encode(), me, me)),
        (b"Max-Forwards", b"70"), (b"From", b"<sip:alice@example.test>;tag=ua"),
        (b"To", b"<sip:door@example.test>"), (b"Call-ID", b"ua-%d" % me), (b"CSeq", b"1 MESSAGE"),
        (b"Content-Type", b"text/plain")], body)
    # alice has a Digest account at Kamailio (edge.cfg authenticates every user)
    assert peers.send_authed(s, (H, stack["kport"]), m, "alice", stack["kam"].users["sip:alice@example.test"]) is None
    return s


@pytest.mark.parametrize("mech", [("ipsec-3gpp",) + p for p in PAIRS] + [("ipsec-man", None, None)],
                         ids=["%s+%s" % p for p in PAIRS] + ["ipsec-man"])
def test_register_and_message_through_edge_and_kamailio(stack, mech):
    dev = Device(IK, CK, PAIRS, MAN)
    net = Net(stack["edge"])
    try:
        r = register(stack, dev, net, *mech)
        assert r.status == 200, edge_log(stack)
        assert any(b"expires=" in c for c in r.get_all("Contact"))
        ua = message_via_kamailio(stack, b"status")
        (sport, dport, got), _ = net.recv_esp(dev)
        assert got.method == b"MESSAGE" and got.body == b"status"
        assert dport == dev.port_s
        net.send_esp(dev.answer(got))
        ua.settimeout(5)
        final = parse(ua.recv(65535))
        ua.close()
        assert final.status == 200
    finally:
        net.close()
    text = edge_log(stack)
    assert "agreed %s alg=%s ealg=%s" % (mech[0], dev.chosen.get(b"alg").decode() if mech[1] else MAN["alg"],
                                         mech[2] or MAN["ealg"]) in text
    assert IK.hex() not in text and CK.hex() not in text


def _device_thread(dev, net, stop, replies):
    """Serve remote-control MESSAGEs: answer 200 and report back with a MESSAGE."""
    relay = "off"
    while not stop.is_set():
        try:
            (sport, dport, m), _ = net.recv_esp(dev, timeout=0.2)
        except socket.timeout:
            continue
        if not m.is_request:
            continue
        if m.method != b"MESSAGE":
            continue
        net.send_esp(dev.answer(m))
        cmd = m.body.decode()
        if cmd == "set relay on":
            relay = "on"
        text = ("ok relay=%s" % relay) if cmd.startswith("set") else "status: relay=%s" % relay
        frm = m.get("From").split(b";")[0].strip(b"<> ")
        net.send_esp(dev.protected_request(b"MESSAGE", to=frm, body=text.encode()))
        replies.append(text)


def test_real_ua_message_reaches_device_over_esp_and_reply_comes_back(stack):
    pytest.importorskip("pjsua2")
    dev = Device(IK, CK, PAIRS, MAN)
    net = Net(stack["edge"])
    cap = _start_capture(stack)
    stop = threading.Event()
    try:
        assert register(stack, dev, net, "ipsec-3gpp", "hmac-sha-1-96", "aes-cbc").status == 200
        replies = []
        th = threading.Thread(target=_device_thread, args=(dev, net, stop, replies))
        th.start()
        out = subprocess.run(
            [sys.executable, "-m", "sipling_host.edge_remote", "--proxy", "%s:%d" % (H, stack["kport"]),
             "--to", "sip:door@example.test", "--send", "status", "--send", "set relay on",
             "--password-file", stack["kam"].password_file()],
            capture_output=True, text=True, timeout=60)
        stop.set()
        th.join()
        events = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        assert out.returncode == 0, (out.stdout, out.stderr, edge_log(stack))
        got = [e["text"] for e in events if e["event"] == "reply"]
        assert got == ["status: relay=off", "ok relay=on"]
        assert [e["code"] for e in events if e["event"] == "sent"] == [200, 200]
    finally:
        stop.set()
        net.close()
        pcap = _stop_capture(cap)
    if os.geteuid() == 0 and shutil.which("dumpcap") and shutil.which("tshark"):
        assert pcap is not None
        _check_with_tshark(stack, dev, pcap)


# -- tshark: the ESP on the wire between device and edge authenticates --------------------
def _start_capture(stack):
    if shutil.which("dumpcap") is None or os.geteuid() != 0:
        return None
    path = str(stack["tmp"] / "esp.pcap")
    p = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", "udp port %d" % stack["edge"]["encap"], "-w", path],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(100):  # dumpcap says "File: ..." once it captures
        if os.path.exists(path):
            break
        time.sleep(0.05)
    time.sleep(0.3)
    return p, path


def _stop_capture(cap):
    if cap is None:
        return None
    p, path = cap
    time.sleep(0.3)
    p.terminate()
    p.wait(timeout=5)
    return path


_TS_AUTH = {"hmac-sha-1-96": "HMAC-SHA-1-96 [RFC2404]"}
_TS_ENC = {"aes-cbc": "AES-CBC [RFC3602]"}


def _check_with_tshark(stack, dev, pcap):
    from sipling.esp.sa import expand_keys
    akey, ekey = expand_keys("hmac-sha-1-96", "aes-cbc", IK, CK)
    uat = []
    for sa in dev.pair.all():
        uat.append('"IPv4","*","*","0x%08x","%s","0x%s","%s","0x%s"' % (
            sa.spi, _TS_ENC["aes-cbc"], ekey.hex(), _TS_AUTH["hmac-sha-1-96"], akey.hex()))
    args = ["tshark", "-r", pcap, "-n", "-o", "esp.enable_encryption_decode:TRUE",
            "-o", "esp.enable_authentication_check:TRUE", "-d", "udp.port==%d,udpencap" % stack["edge"]["encap"]]
    for u in uat:
        args += ["-o", "uat:esp_sa:" + u]
    args += ["-T", "fields", "-E", "separator=/t", "-e", "esp.spi", "-e", "esp.icv_good", "-e", "sip.Method",
             "-e", "sip.Status-Code", "-Y", "esp"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60).stdout
    rows = [r.split("\t") for r in out.splitlines() if r.strip()]
    assert rows, "tshark saw no ESP on port %d" % stack["edge"]["encap"]
    assert all(r[1] == "1" for r in rows), rows
    methods = {r[2] for r in rows} | {r[3] for r in rows}
    assert "MESSAGE" in methods and "200" in methods, rows
    spis = {int(r[0], 16) for r in rows}
    assert spis <= {sa.spi for sa in dev.pair.all()}
    assert len(spis) == 4, rows  # all four SAs of the pair carried traffic


def _door_register(src_ip, me, extra=()):
    """A plain REGISTER for the device's AOR from src_ip:me (not through the edge)."""
    return request(b"REGISTER", b"sip:example.test", [
        (b"Via", b"SIP/2.0/UDP %s:%d;branch=z9hG4bK-r%d;rport" % (src_ip.encode(), me, me)),
        (b"Max-Forwards", b"70"), (b"From", b"<sip:door@example.test>;tag=r"),
        (b"To", b"<sip:door@example.test>"), (b"Call-ID", b"direct-%d" % me), (b"CSeq", b"1 REGISTER"),
        (b"Contact", b"<sip:door@%s:%d>" % (src_ip.encode(), me)), (b"Expires", b"60")] + list(extra))


def _register_direct(stack, src_ip, extra):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((src_ip, 0))
    s.settimeout(5)
    me = s.getsockname()[1]
    s.sendto(_door_register(src_ip, me, extra).serialize(), (H, stack["kport"]))
    try:
        return parse(s.recv(65535))
    finally:
        s.close()


def test_kamailio_cfg_refuses_what_did_not_come_through_the_edge(stack):
    # sec-agree straight to Kamailio: 421 + Require: sec-agree, nothing saved
    r = _register_direct(stack, H, [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree"),
                                    (b"Security-Client", b"ipsec-3gpp;alg=hmac-sha-1-96;spi-c=1;spi-s=2;"
                                                         b"port-c=1;port-s=2")])
    assert r.status == 421 and r.get("Require") == b"sec-agree"
    # a Path from an address that is not the edge's (EDGE_ADDR): 403
    r = _register_direct(stack, "127.0.0.2", [(b"Path", b"<sip:evil@127.0.0.2:5999;lr>")])
    assert r.status == 403


def test_kamailio_cfg_authenticates_everyone_but_the_edge(stack):
    # issue 10 finding 3: nobody binds or unbinds the device's AOR without the edge, and a
    # request's asserted identity is the authenticated user, never what the sender wrote
    dev = Device(IK, CK, PAIRS, MAN)
    net = Net(stack["edge"])
    try:
        assert register(stack, dev, net, "ipsec-3gpp", "hmac-sha-1-96", "aes-cbc").status == 200
        # an unauthenticated REGISTER for the device's AOR, and `Contact: *` to unbind it
        assert _register_direct(stack, H, []).status == 401
        r = _register_direct(stack, H, [(b"Contact", b"*")])
        assert r.status in (400, 401)
        # alice's own account cannot register as the device either
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((H, 0))
        me = s.getsockname()[1]
        m = _door_register(H, me)
        assert peers.send_authed(s, (H, stack["kport"]), m, "alice", stack["kam"].users["sip:alice@example.test"]) is None
        assert parse(s.recv(65535)).status == 403
        s.close()
        # a MESSAGE with a forged From and a forged PAI, unauthenticated: challenged, not relayed
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((H, 0))
        s.settimeout(3)
        me = s.getsockname()[1]
        m = request(b"MESSAGE", b"sip:door@example.test", [
            (b"Via", b"SIP/2.0/UDP %s:%d;branch=z9hG4bK-fm%d;rport" % (H.encode(), me, me)),
            (b"Max-Forwards", b"70"), (b"From", b"<sip:alice@example.test>;tag=f"),
            (b"To", b"<sip:door@example.test>"), (b"Call-ID", b"forged-%d" % me), (b"CSeq", b"1 MESSAGE"),
            (b"P-Asserted-Identity", b"<sip:alice@example.test>"), (b"Content-Type", b"text/plain")], b"set relay on")
        s.sendto(m.serialize(), (H, stack["kport"]))
        assert parse(s.recv(65535)).status == 407
        s.close()
        with pytest.raises(socket.timeout):
            net.recv_esp(dev, timeout=1)
        # the authenticated owner's MESSAGE reaches the device with the asserted identity,
        # whatever PAI the sender put in
        ua = message_via_kamailio(stack, b"status")
        (sport, dport, got), _ = net.recv_esp(dev)
        assert got.get_all("P-Asserted-Identity") == [b"<sip:alice@example.test>"]
        net.send_esp(dev.answer(got))
        ua.settimeout(5)
        assert parse(ua.recv(65535)).status == 200
        ua.close()
    finally:
        net.close()
