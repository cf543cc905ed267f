"""ESP interop, both directions, for every (auth, enc) pair in one capture.

The firmware runs on the MicroPython unix port (tests/host/esp/mp_peer.py with the shell's
ESP-in-UDP carrier) and sends one SIP request per ipsec-3gpp pair to this process while
dumpcap captures loopback. Then:
  * tshark (recipe copied to tests/host/esp/tshark_esp_decode.sh) must authenticate every
    firmware packet (esp.icv_good == 1) and decode the inner SIP request;
  * scapy's SecurityAssociation must decrypt the same captured packets;
  * packets made by scapy (proxy side, SA2 of each pair) must be accepted by the firmware,
    which reports the inner ports and payload; a NAT keep-alive and a forged packet are
    ignored and counted.
Keys follow the 3GPP expansion written out independently here (DESIGN.md section 4).
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

import peers

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

AUTHS = ("hmac-md5-96", "hmac-sha-1-96", "hmac-sha-256-128")
ENCS = ("null", "aes-cbc", "des-ede3-cbc")
TSHARK_AUTH = {"hmac-md5-96": "HMAC-MD5-96 [RFC2403]", "hmac-sha-1-96": "HMAC-SHA-1-96 [RFC2404]",
               "hmac-sha-256-128": "HMAC-SHA-256-128 [RFC4868]"}
TSHARK_ENC = {"null": "NULL", "aes-cbc": "AES-CBC [RFC3602]", "des-ede3-cbc": "TripleDES-CBC [RFC2451]"}
SCAPY_AUTH = {"hmac-md5-96": "HMAC-MD5-96", "hmac-sha-1-96": "HMAC-SHA1-96",
              "hmac-sha-256-128": "SHA2-256-128"}
SCAPY_ENC = {"null": "NULL", "aes-cbc": "AES-CBC", "des-ede3-cbc": "3DES"}
UE_PC, UE_PS, PX_PC, PX_PS = 5062, 5064, 5066, 5068
SIP = ("MESSAGE sip:owner@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5064;branch=z9hG4bK{i}\r\n"
       "From: <sip:dev@example.test>;tag=a{i}\r\nTo: <sip:owner@example.test>\r\nCall-ID: esp-{i}\r\n"
       "CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\nstatus")


def _keys(alg, ealg, ik, ck):
    # 3GPP key expansion, written independently of firmware/sipling/esp/sa.py
    akey = {"hmac-sha-1-96": ik + b"\0" * 4, "hmac-md5-96": ik, "hmac-sha-256-128": ik + b"\0" * 16}[alg]
    ekey = {"null": b"", "aes-cbc": ck, "des-ede3-cbc": ck + ck[:8]}[ealg]
    return akey, ekey


def _pairs():
    out = []
    i = 0
    for alg in AUTHS:
        for ealg in ENCS:
            ik = hashlib.sha256(b"ik%d" % i).digest()[:16]
            ck = hashlib.sha256(b"ck%d" % i).digest()[:16]
            out.append({"alg": alg, "ealg": ealg, "ik": ik.hex(), "ck": ck.hex(),
                        "our_spi_c": 0x10000 + 16 * i + 1, "our_spi_s": 0x10000 + 16 * i + 2,
                        "their_spi_c": 0x20000 + 16 * i + 1, "their_spi_s": 0x20000 + 16 * i + 2})
            i += 1
    return out


def _scapy_sa(p, spi, sport, dport):
    from scapy.layers.inet import UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    akey, ekey = _keys(p["alg"], p["ealg"], bytes.fromhex(p["ik"]), bytes.fromhex(p["ck"]))
    return SecurityAssociation(ESP, spi=spi, crypt_algo=SCAPY_ENC[p["ealg"]],
                               crypt_key=ekey or None, auth_algo=SCAPY_AUTH[p["alg"]],
                               auth_key=akey, nat_t_header=UDP(sport=sport, dport=dport))


def _start_mp_peer(mp_bin, d, conf):
    """The firmware's ESP code on the MicroPython unix port (esp/mp_peer.py) with conf
    written to d/conf.json: (process, its first output line)."""
    cpath = d / "conf.json"
    cpath.write_text(json.dumps(conf))
    env = dict(os.environ, MICROPYPATH=os.path.join(ROOT, "firmware"))
    mp = subprocess.Popen([mp_bin, os.path.join(HERE, "esp", "mp_peer.py"), str(cpath)], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return mp, mp.stdout.readline()


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    for b in ("dumpcap", "tshark"):
        if not shutil.which(b):
            pytest.skip("%s not installed (apt-get install tshark)" % b)
    mp_bin = peers.micropython()
    pytest.importorskip("scapy")
    from scapy.layers.inet import IP, UDP
    from scapy.packet import Raw

    tmp = tmp_path_factory.mktemp("esp")
    pairs = _pairs()
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    host.settimeout(5)
    hport = host.getsockname()[1]
    fport = peers.free_udp_port()
    pcap = str(tmp / "esp.pcapng")
    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", "udp port %d" % hport, "-w", pcap],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 10
        while not os.path.exists(pcap) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # the capture filter is live once the file exists
        conf = {"pairs": pairs, "our_port_c": UE_PC, "our_port_s": UE_PS, "their_port_c": PX_PC,
                "their_port_s": PX_PS, "my_encap_port": fport, "peer_encap_port": hport,
                "sip": SIP, "expect": len(pairs), "timeout_ms": 8000}
        mp, first = _start_mp_peer(mp_bin, tmp, conf)
        assert first.startswith("SENT %d" % len(pairs)), first + mp.stderr.read()
        received = []
        keepalive = False
        while len(received) < len(pairs) or not keepalive:
            data, _ = host.recvfrom(4096)
            if data == b"\xff":
                keepalive = True
            else:
                received.append(data)
        # proxy -> device: SA2 of each pair (proxy port-c -> UE port-s, UE's spi-s), by scapy
        made = []
        host.sendto(b"\xff", ("127.0.0.1", fport))  # keep-alive: ignored
        for i, p in enumerate(pairs):
            sa = _scapy_sa(p, p["our_spi_s"], hport, fport)
            pkt = sa.encrypt(IP(src="127.0.0.1", dst="127.0.0.1") /
                             UDP(sport=PX_PC, dport=UE_PS) / Raw(("SIP/2.0 200 OK %d" % i).encode()))
            esp = bytes(pkt[UDP].payload)
            made.append(esp)
            if i == 0:  # a forged copy first: must be dropped as bad_icv, not block the real one
                forged = bytearray(esp)
                forged[-1] ^= 0x80
                host.sendto(bytes(forged), ("127.0.0.1", fport))
            host.sendto(esp, ("127.0.0.1", fport))
        out, err = mp.communicate(timeout=15)
    finally:
        host.close()
        time.sleep(0.3)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
    lines = out.strip().split("\n")
    return {"pairs": pairs, "pcap": pcap, "hport": hport, "fport": fport, "tmp": tmp,
            "received": received, "accepted": [json.loads(x) for x in lines if x.startswith("{")],
            "done": json.loads(lines[-1][5:]) if lines and lines[-1].startswith("DONE ") else None,
            "stderr": err}


def test_tshark_authenticates_and_decodes_firmware_packets(session):
    uat = session["tmp"] / "esp_sa.uat"
    rows = []
    for p in session["pairs"]:
        akey, ekey = _keys(p["alg"], p["ealg"], bytes.fromhex(p["ik"]), bytes.fromhex(p["ck"]))
        for spi in (p["their_spi_s"], p["our_spi_s"]):  # device->proxy SA1, proxy->device SA2
            rows.append('"IPv4","*","*","0x%08x","%s","%s","%s","0x%s"' % (
                spi, TSHARK_ENC[p["ealg"]], ("0x" + ekey.hex()) if ekey else "",
                TSHARK_AUTH[p["alg"]], akey.hex()))
    uat.write_text("\n".join(rows) + "\n")
    script = os.path.join(HERE, "esp", "tshark_esp_decode.sh")
    r = subprocess.run([script, session["pcap"], str(uat), str(session["hport"]),
                        "-d", "udp.port==%d,sip" % PX_PS, "-d", "udp.port==%d,sip" % UE_PS,
                        "-T", "fields", "-E", "separator=/t", "-e", "esp.spi", "-e", "esp.icv_good",
                        "-e", "udp.srcport", "-e", "sip.Request-Line", "-e", "sip.Status-Line"],
                       capture_output=True, text=True, timeout=60)
    by_spi = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 5 and f[0]:
            by_spi.setdefault(int(f[0], 16), []).append(f)
    for i, p in enumerate(session["pairs"]):
        rows = by_spi.get(p["their_spi_s"])
        assert rows, ("firmware packet not in capture", p["alg"], p["ealg"], r.stdout)
        f = rows[0]
        assert f[1] == "1", ("icv not good", p["alg"], p["ealg"], f)
        assert f[3] == "MESSAGE sip:owner@example.test SIP/2.0", (p["alg"], p["ealg"], f)
        good = [x for x in by_spi.get(p["our_spi_s"], []) if x[1] == "1"]
        assert good and good[0][4] == "SIP/2.0 200 OK %d" % i  # scapy's packet, checked too
    # the forged copy is in the capture and tshark says its ICV is bad
    assert any(x[1] != "1" for x in by_spi.get(session["pairs"][0]["our_spi_s"], []))


def test_scapy_decrypts_captured_firmware_packets(session):
    from scapy.all import rdpcap
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP
    from scapy.packet import bind_bottom_up
    bind_bottom_up(UDP, ESP, dport=session["hport"])
    by_spi = {}
    for pkt in rdpcap(session["pcap"]):
        if ESP in pkt and pkt[UDP].dport == session["hport"]:
            by_spi[pkt[ESP].spi] = pkt[IP]
    assert len(session["received"]) == len(session["pairs"])
    for i, p in enumerate(session["pairs"]):
        ip = by_spi[p["their_spi_s"]]
        sa = _scapy_sa(p, p["their_spi_s"], session["fport"], session["hport"])
        inner = sa.decrypt(ip.copy())
        assert inner[UDP].sport == UE_PC and inner[UDP].dport == PX_PS, (p["alg"], p["ealg"])
        assert bytes(inner[UDP].payload) == SIP.replace("{i}", str(i)).encode()
        # the inner checksum is what a standard receiver accepts (RFC 768, outer addresses)
        got = inner[UDP].chksum
        del inner[UDP].chksum
        assert IP(bytes(inner))[UDP].chksum == got


def test_firmware_accepts_scapy_packets(session):
    acc = session["accepted"]
    assert session["done"] is not None, session["stderr"]
    assert len(acc) == len(session["pairs"]), (acc, session["done"])
    for i, p in enumerate(session["pairs"]):
        a = acc[i]
        assert a["spi"] == p["our_spi_s"] and a["sa"] == "sa2", (p["alg"], p["ealg"], a)
        assert (a["sport"], a["dport"]) == (PX_PC, UE_PS)
        assert a["payload"] == "SIP/2.0 200 OK %d" % i
    d = session["done"]
    assert d["keepalives_rx"] == 1
    assert d["drops"] == {"unknown_spi": 0, "bad_icv": 1, "replay": 0, "bad_pad": 0,
                          "too_short": 0, "bad_inner": 0}


def test_raw_esp_protocol_50_both_directions(tmp_path):
    """The raw carrier (ESP directly in IPv4, protocol 50): tshark authenticates what the
    firmware sends, and the firmware accepts scapy's packets. Needs root (raw sockets)."""
    if os.geteuid() != 0:
        pytest.skip("raw ESP sockets need root")
    for b in ("dumpcap", "tshark"):
        if not shutil.which(b):
            pytest.skip("%s not installed" % b)
    mp_bin = peers.micropython()
    from scapy.layers.inet import IP, UDP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.packet import Raw
    pairs = _pairs()
    pcap = str(tmp_path / "raw.pcapng")
    cap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", "ip proto 50", "-w", pcap],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    try:
        deadline = time.time() + 10
        while not os.path.exists(pcap) and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        conf = {"pairs": pairs, "carrier": "raw", "our_port_c": UE_PC, "our_port_s": UE_PS,
                "their_port_c": PX_PC, "their_port_s": PX_PS, "sip": SIP,
                "expect": len(pairs), "timeout_ms": 8000}
        mp, first = _start_mp_peer(mp_bin, tmp_path, conf)
        assert first.startswith("SENT"), first + mp.stderr.read()
        for i, p in enumerate(pairs):
            akey, ekey = _keys(p["alg"], p["ealg"], bytes.fromhex(p["ik"]), bytes.fromhex(p["ck"]))
            sa = SecurityAssociation(ESP, spi=p["our_spi_s"], crypt_algo=SCAPY_ENC[p["ealg"]],
                                     crypt_key=ekey or None, auth_algo=SCAPY_AUTH[p["alg"]],
                                     auth_key=akey)
            pkt = sa.encrypt(IP(src="127.0.0.1", dst="127.0.0.1") /
                             UDP(sport=PX_PC, dport=UE_PS) / Raw(b"SIP/2.0 200 OK raw %d" % i))
            raw.sendto(bytes(pkt[ESP]), ("127.0.0.1", 0))
        out, err = mp.communicate(timeout=15)
    finally:
        raw.close()
        time.sleep(0.3)
        cap.send_signal(signal.SIGINT)
        cap.wait(timeout=10)
    acc = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    assert [a["payload"] for a in acc] == ["SIP/2.0 200 OK raw %d" % i for i in range(len(pairs))], out + err
    uat = tmp_path / "uat"
    rows = []
    for p in pairs:
        akey, ekey = _keys(p["alg"], p["ealg"], bytes.fromhex(p["ik"]), bytes.fromhex(p["ck"]))
        rows.append('"IPv4","*","*","0x%08x","%s","%s","%s","0x%s"' % (
            p["their_spi_s"], TSHARK_ENC[p["ealg"]], ("0x" + ekey.hex()) if ekey else "",
            TSHARK_AUTH[p["alg"]], akey.hex()))
    uat.write_text("\n".join(rows) + "\n")
    r = subprocess.run([os.path.join(HERE, "esp", "tshark_esp_decode.sh"), pcap, str(uat), "4500",
                        "-d", "udp.port==%d,sip" % PX_PS, "-T", "fields", "-E", "separator=/t",
                        "-e", "esp.spi", "-e", "esp.icv_good", "-e", "sip.Request-Line"],
                       capture_output=True, text=True, timeout=60)
    seen = {}
    for line in r.stdout.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[0]:
            seen.setdefault(int(f[0], 16), f)
    for p in pairs:
        f = seen.get(p["their_spi_s"])
        assert f and f[1] == "1" and f[2] == "MESSAGE sip:owner@example.test SIP/2.0", (p, r.stdout)
