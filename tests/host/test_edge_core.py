"""`sipling edge` core, driven sans-IO: a scripted device (firmware cores) and a scripted proxy."""
import json
import os

import pytest

import sipling_host  # noqa: F401  (mpshim)
from sipling.sip.message import request, response
from sipling.sip.parser import parse
from sipling_host.edge_bundle import BundleStore
from sipling_host.edge_core import ACTIVE, IDLE, EdgeConfig, Edge
from sipling_host.edge_esp import EdgeEsp

from edge_scripted import Device, device_json, man_section

PAIRS = [(a, e) for a in ("hmac-sha-1-96", "hmac-md5-96", "hmac-sha-256-128")
         for e in ("null", "aes-cbc", "des-ede3-cbc")]
IK = bytes(range(16))
CK = bytes(range(16, 32))
DEV_ADDR = ("127.0.0.1", 4501)
PROXY = ("127.0.0.1", 5070)


class Rig:
    def __init__(self, tmp_path, algs=PAIRS, man=True, challenge="494"):
        self.dir = tmp_path / "bundles"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.man = man_section(IK[::-1], CK[::-1]) if man else None
        (self.dir / "door.json").write_text(json.dumps(device_json(IK, CK, algs, self.man)))
        self.logs = []
        self.cfg = EdgeConfig(proxy=PROXY, challenge=challenge)
        self.edge = Edge(self.cfg, BundleStore(str(self.dir)), EdgeEsp(os.urandom),
                         lambda lvl, dev, text: self.logs.append((lvl, dev, text)), os.urandom)
        self.edge.reload(0)
        self.dev = Device(IK, CK, algs, self.man)
        self.now = 0

    def out(self, kind=None):
        got = self.edge.datagrams_to_send()
        if kind is not None:
            assert [k for k, _, _ in got] == [kind] * len(got), got
        return got

    def negotiate(self, kind, alg=None, ealg=None, tamper=None):
        self.edge.receive_plain(self.dev.first_register(), DEV_ADDR, self.now)
        (k, data, addr), = self.out()
        assert (k, addr) == ("plain", DEV_ADDR)
        return self.dev.choose(data, kind, alg, ealg, tamper)

    def register(self, kind, alg=None, ealg=None):
        self.negotiate(kind, alg, ealg)
        self.edge.receive_esp(self.dev.protected_request(b"REGISTER"), DEV_ADDR, self.now)
        (k, data, addr), = self.out("inner")
        assert addr == PROXY
        req = parse(data)
        self.edge.receive_inner(response(req, 200, b"OK", [(b"Contact", b"<sip:door@127.0.0.1:5064>;expires=600")],
                                         to_tag=b"kam").serialize(), PROXY, self.now)
        (k, pkt, addr), = self.out("esp")
        assert addr == DEV_ADDR
        sport, dport, rsp = self.dev.open(pkt)
        assert (rsp.status, sport, dport) == (200, self.dev.pair.in_c.sport, self.dev.port_c)
        return req


@pytest.mark.parametrize("pair", PAIRS, ids=["%s+%s" % p for p in PAIRS])
def test_ipsec_3gpp_register_and_message_every_pair(tmp_path, pair):
    rig = Rig(tmp_path)
    req = rig.register("ipsec-3gpp", *pair)
    # what the proxy sees: plain SIP, our Via on top, Path back to the edge, no sec-agree left
    assert req.get("Path") == b"<sip:door@127.0.0.1:5059;lr>"
    assert req.top_via().port == 5059 and req.top_via().branch.startswith(b"z9hG4bK")
    assert req.get("Security-Verify") is None and req.get("Security-Client") is None
    assert req.get("Require") is None and req.get("Proxy-Require") is None
    s = rig.edge.sessions["door"]
    assert s.state == ACTIVE and (s.chosen.alg, s.chosen.ealg) == pair
    assert any("registered for 600 s" in t for _, _, t in rig.logs)
    # a MESSAGE from the proxy, routed by the stored Path, reaches the device on SA 2
    msg = (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKk1\r\n"
           b"Route: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
           b"To: <sip:door@example.test>\r\nCall-ID: m1\r\nCSeq: 1 MESSAGE\r\n"
           b"P-Asserted-Identity: <sip:door@example.test>\r\nContent-Length: 6\r\n\r\nstatus")
    rig.edge.receive_inner(msg, PROXY, 1)
    (k, pkt, addr), = rig.out("esp")
    sport, dport, got = rig.dev.open(pkt)
    assert (sport, dport) == (5066, rig.dev.port_s)
    assert got.body == b"status" and got.get("Route") is None
    # the proxy authenticated the sender and asserted it (RFC 3325): passed on by default
    assert got.get_all("P-Asserted-Identity") == [b"<sip:door@example.test>"]
    # the device's 200 goes back through the edge to the proxy, our Via removed
    rig.edge.receive_esp(rig.dev.answer(got), DEV_ADDR, 2)
    (k, data, addr), = rig.out("inner")
    r = parse(data)
    assert addr == PROXY and r.status == 200 and r.via_branch() == b"z9hG4bKk1"


def test_ipsec_man_register(tmp_path):
    rig = Rig(tmp_path, algs=[("hmac-sha-1-96", "aes-cbc")])
    rig.register("ipsec-man")
    s = rig.edge.sessions["door"]
    assert s.chosen.kind == b"ipsec-man" and s.chosen.spi_ps == 2002
    # the manual SAs outlive the association (their replay window must not restart)
    rig.edge._end(s, "test")
    assert rig.edge.esp.has_spi(2002)


def test_list_sent_has_distinct_q_and_fresh_spis(tmp_path):
    rig = Rig(tmp_path)
    rig.edge.receive_plain(rig.dev.first_register(), DEV_ADDR, 0)
    (_, data, _), = rig.out()
    r = parse(data)
    assert r.status == 494
    lines = r.header_lines("Security-Server")
    assert len(lines) == len(PAIRS) + 1
    qs = [ln.split(b";q=")[1].split(b";")[0] for ln in lines]
    assert len(set(qs)) == len(qs)
    spis = [ln.split(b"spi-s=")[1].split(b";")[0] for ln in lines[:-1]]
    assert len(set(spis)) == len(spis)
    assert lines[-1].startswith(b"ipsec-man;q=")


def test_tampered_list_is_detected_and_renegotiated(tmp_path):
    rig = Rig(tmp_path)

    def downgrade(lines):  # an attacker raises the q of the null-encryption line
        return [ln.replace(b"q=0.", b"q=1.0;x=0.") if b"ealg=null" in ln and b"md5" in ln else ln
                for ln in lines]
    rig.negotiate("ipsec-3gpp", "hmac-md5-96", "null", tamper=downgrade)
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER"), DEV_ADDR, 0)
    (k, pkt, addr), = rig.out("esp")        # nothing relayed to the proxy
    _, _, r = rig.dev.open(pkt)
    assert r.status == 494
    sent = [bytes(x) for x in r.header_lines("Security-Server")]
    assert sent != rig.dev.server_lines and len(sent) == len(rig.dev.server_lines)
    s = rig.edge.sessions["door"]
    assert s.state == IDLE and s.drops == {"verify-mismatch": 1}
    # the device starts over and this time the list arrives intact
    rig.dev.spi_c += 2
    rig.dev.spi_s += 2
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    assert s.state == ACTIVE


def test_replayed_esp_to_edge_is_refused(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    pkt = rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"hi")
    rig.edge.receive_esp(pkt, DEV_ADDR, 1)
    assert len(rig.out("inner")) == 1
    rig.edge.receive_esp(pkt, DEV_ADDR, 2)
    assert rig.out() == []
    assert rig.edge.sessions["door"].drops == {"replay": 1}
    assert rig.edge.esp.drops == {"replay": 1}


def test_bit_flip_and_unknown_spi_are_dropped(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    pkt = bytearray(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"hi"))
    pkt[20] ^= 1
    rig.edge.receive_esp(bytes(pkt), DEV_ADDR, 1)
    pkt[0] ^= 0x80
    rig.edge.receive_esp(bytes(pkt), DEV_ADDR, 1)
    assert rig.out() == []
    assert rig.edge.esp.drops == {"bad_icv": 1, "unknown_spi": 1}


def test_missing_security_verify_on_later_request(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "null")
    rig.edge.receive_esp(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"x",
                                                   verify=False), DEV_ADDR, 1)
    (k, pkt, _), = rig.out("esp")
    assert rig.dev.open(pkt)[2].status == 494
    assert rig.edge.sessions["door"].drops == {"verify-mismatch": 1}


def test_device_request_gets_asserted_identity(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "null")
    rig.edge.receive_esp(rig.dev.protected_request(
        b"MESSAGE", to=b"sip:alice@example.test", body=b"relay on",
        extra=[(b"P-Asserted-Identity", b"<sip:boss@example.test>")]), DEV_ADDR, 1)
    (_, data, _), = rig.out("inner")
    m = parse(data)
    assert m.get_all("P-Asserted-Identity") == [b"<sip:door@example.test>"]
    assert m.get("Max-Forwards") == b"69"


def test_unprotected_requests_and_unknown_devices(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "null")
    plain_msg = (b"MESSAGE sip:alice@example.test SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5064;branch=z9hG4bKp\r\n"
                 b"From: <sip:door@example.test>;tag=1\r\nTo: <sip:door@example.test>\r\nCall-ID: p\r\n"
                 b"CSeq: 1 MESSAGE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    rig.edge.receive_plain(plain_msg, DEV_ADDR, 1)
    (_, data, _), = rig.out("plain")
    assert parse(data).status == 403
    assert rig.edge.sessions["door"].drops == {"unprotected": 1}
    other = Device(IK, CK, PAIRS, aor="sip:mallory@example.test")
    rig.edge.receive_plain(other.first_register(), DEV_ADDR, 1)
    (_, data, _), = rig.out("plain")
    assert parse(data).status == 403


def test_register_without_secagree_gets_421(tmp_path):
    rig = Rig(tmp_path)
    reg = rig.dev.first_register(mechanisms=())
    reg = reg.replace(b"Require: sec-agree\r\nProxy-Require: sec-agree\r\n", b"")
    rig.edge.receive_plain(reg, DEV_ADDR, 0)
    (_, data, _), = rig.out("plain")
    r = parse(data)
    assert r.status == 421 and r.get("Require") == b"sec-agree"


def test_request_for_unconnected_device_gets_480(tmp_path):
    rig = Rig(tmp_path)
    msg = (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKk2\r\n"
           b"Route: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
           b"To: <sip:door@example.test>\r\nCall-ID: m2\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
    rig.edge.receive_inner(msg, PROXY, 0)
    (_, data, addr), = rig.out("inner")
    assert parse(data).status == 480 and addr == PROXY


def test_401_mode_checks_digest(tmp_path):
    from sipling.sip import digest
    rig = Rig(tmp_path, challenge="401")
    r = rig.negotiate("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    assert r.status == 401 and r.header_lines("Security-Server")
    ch = digest.choose(r.get_all("WWW-Authenticate"))[0]
    pw = json.loads((rig.dir / "door.json").read_text())["identity"]["password"].encode()
    auth = digest.authorization(ch, b"door", pw, b"REGISTER", b"sip:example.test", cnonce=b"abc")
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER", extra=[(b"Authorization", auth)]), DEV_ADDR, 0)
    (_, data, _), = rig.out("inner")
    assert parse(data).get("Authorization") is None
    assert rig.edge.sessions["door"].state == ACTIVE
    # a wrong password is refused and nothing reaches the proxy
    rig2 = Rig(tmp_path / "second", challenge="401")
    r = rig2.negotiate("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    ch = digest.choose(r.get_all("WWW-Authenticate"))[0]
    auth = digest.authorization(ch, b"door", b"wrong", b"REGISTER", b"sip:example.test", cnonce=b"abc")
    rig2.edge.receive_esp(rig2.dev.protected_request(b"REGISTER", extra=[(b"Authorization", auth)]), DEV_ADDR, 0)
    (_, pkt, _), = rig2.out("esp")
    assert rig2.dev.open(pkt)[2].status == 403
    assert rig2.edge.sessions["door"].drops == {"bad-digest": 1}


def test_bundle_change_ends_association_and_reload_picks_it_up(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    path = rig.dir / "door.json"
    d = json.loads(path.read_text())
    d["ipsec"]["ik"] = "ff" * 16
    path.write_text(json.dumps(d))
    os.utime(path, ns=(1, 1))  # make sure the stamp differs even within one clock tick
    added, changed, removed = rig.edge.reload(5)
    assert changed == ["door"] and rig.edge.sessions["door"].state == IDLE
    assert not rig.edge.esp.pairs or all(spi in (2002,) for spi in rig.edge.esp.pairs)
    path.unlink()
    assert rig.edge.reload(6)[2] == ["door"] and "door" not in rig.edge.sessions


def test_registration_expiry_ends_association(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    assert rig.edge.get_timer() == 32000      # the REGISTER's branch entry (64*T1)
    rig.edge.handle_timer(32000)
    assert rig.edge.get_timer() == 600000     # then the binding's expiry
    rig.edge.handle_timer(599999)
    assert rig.edge.sessions["door"].state == ACTIVE
    rig.edge.handle_timer(600000)
    assert rig.edge.sessions["door"].state == IDLE


def test_logs_never_contain_keys(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    text = repr(rig.logs) + repr(rig.edge.status_lines(1))
    for secret in (IK.hex(), CK.hex(), IK[::-1].hex(), "pw-"):
        assert secret not in text


def test_reads_the_bundle_provision_writes(tmp_path):
    import argparse
    from sipling_host import provision
    from sipling_host.edge_bundle import load_file
    p = argparse.ArgumentParser()
    provision.add_arguments(p)
    args = p.parse_args(["--port", "unused", "--aor", "sip:door@example.test", "--proxy", "127.0.0.1:5060",
                         "--mechanisms", "ipsec-3gpp,ipsec-man", "--encap-port", "4501"])
    cfg, bundle = provision.build(args)
    path = provision.write_bundle(str(tmp_path), bundle)
    dev = load_file(path)
    assert dev.aor == "sip:door@example.test" and dev.user == "door"
    assert dev.ik == bytes.fromhex(cfg["ipsec"]["ik"]) and dev.algs == [tuple(x) for x in cfg["ipsec"]["algs"]]
    assert dev.man["spi_ps"] == cfg["ipsec_man"]["spi_ps"] and dev.man["ik"] == bytes.fromhex(cfg["ipsec_man"]["ik"])
    assert (dev.peer_host, dev.peer_encap_port) == ("127.0.0.1", 4501)
    assert "door" not in repr(dev.password) or dev.password not in repr(dev)
    # the device's own config works as a bundle too, and a device limited to ipsec-3gpp gets no ipsec-man
    cfg["secagree"]["mechanisms"] = ["ipsec-3gpp"]
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    d2 = load_file(str(tmp_path / "cfg.json"))
    assert d2.man is None and d2.ik == dev.ik
    # the Path user part escapes the '@' of a provision bundle's name
    rig = Rig(tmp_path / "rig")
    os.replace(path, rig.dir / os.path.basename(path))
    rig.edge.reload(1)
    s = rig.edge.sessions["door@example.test"]
    assert rig.edge._my_uri(s) == b"sip:door%40example.test@127.0.0.1:5059"


def test_old_sa_keeps_working_while_a_new_list_is_offered(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    old_lines = rig.dev.server_lines
    # another plain REGISTER (e.g. after a device restart that kept nothing) gets a new list ...
    rig.edge.receive_plain(Device(IK, CK, PAIRS, rig.man).first_register(), DEV_ADDR, 1)
    rig.out("plain")
    # ... while requests on the agreement in use still verify against the list it came from
    rig.dev.server_lines = old_lines
    rig.edge.receive_esp(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"x"),
                         DEV_ADDR, 2)
    assert len(rig.out("inner")) == 1
    assert rig.edge.sessions["door"].drops == {}


def test_401_mode_refresh_rekeys_with_fresh_spis(tmp_path):
    from sipling.sip import digest
    rig = Rig(tmp_path, challenge="401")
    pw = json.loads((rig.dir / "door.json").read_text())["identity"]["password"].encode()

    def auth_for(r):
        ch = digest.choose(r.get_all("WWW-Authenticate"))[0]
        return digest.authorization(ch, b"door", pw, b"REGISTER", b"sip:example.test", cnonce=b"c1")
    r = rig.negotiate("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER", extra=[(b"Authorization", auth_for(r))]),
                         DEV_ADDR, 0)
    rig.out("inner")
    s = rig.edge.sessions["door"]
    first = s.chosen
    # refresh: protected REGISTER with a fresh Security-Client (new SPIs) under the old SAs
    old_pair, old_db = rig.dev.pair, rig.dev.db
    rig.dev.spi_c, rig.dev.spi_s = rig.dev.spi_c + 10, rig.dev.spi_s + 10
    client = [(b"Security-Client", ln) for ln in parse(rig.dev.first_register(("ipsec-3gpp",))).header_lines(
        "Security-Client")]
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER", extra=client), DEV_ADDR, 10)
    (_, pkt, _), = rig.out("esp")
    _, _, r = rig.dev.open(pkt)
    assert r.status == 401 and len(r.header_lines("Security-Server")) == len(PAIRS)
    assert s.chosen is first  # still in use
    rig.dev.choose(r.serialize(), "ipsec-3gpp", "hmac-md5-96", "des-ede3-cbc")
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER", extra=[(b"Authorization", auth_for(r))]),
                         DEV_ADDR, 11)
    assert len(rig.out("inner")) == 1
    assert s.chosen is not first and (s.chosen.alg, s.chosen.ealg) == ("hmac-md5-96", "des-ede3-cbc")
    assert s.chosen.spi_us == rig.dev.spi_s and not rig.edge.esp.has_spi(first.spi_ps)
    # the old SAs are gone: a packet on them is an unknown SPI now
    rig.dev.pair, rig.dev.db = old_pair, old_db
    rig.edge.receive_esp(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test"), DEV_ADDR, 12)
    assert rig.out() == [] and rig.edge.esp.drops == {"unknown_spi": 1}


def test_forced_reload_of_unchanged_bundles_keeps_the_association(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    assert rig.edge.reload(5, force=True) == ([], [], [])     # SIGHUP with nothing changed
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER"), DEV_ADDR, 6)
    assert len(rig.out("inner")) == 1 and rig.edge.sessions["door"].drops == {}


def test_ipsec_man_sequence_and_replay_state_survive_an_edge_restart(tmp_path):
    state = tmp_path / "state"
    state.mkdir()

    def edge_with_state():
        rig.edge = Edge(rig.cfg, BundleStore(str(rig.dir)), EdgeEsp(os.urandom, str(state)),
                        lambda lvl, dev, text: rig.logs.append((lvl, dev, text)), os.urandom)
        rig.edge.reload(0)
    rig = Rig(tmp_path / "r", algs=[("hmac-sha-1-96", "aes-cbc")])
    edge_with_state()
    rig.register("ipsec-man")
    captured = rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"one")
    rig.edge.receive_esp(captured, DEV_ADDR, 1)
    assert len(rig.out("inner")) == 1
    out_sa = rig.edge.esp.pairs[2002][1].out_s
    used = out_sa.counter.last
    # the edge restarts: same bundle, same state directory, fresh process state
    edge_with_state()
    rig.edge.receive_plain(rig.dev.first_register(), DEV_ADDR, 2)
    (_, r494, _), = rig.out("plain")
    # the device keeps its manual SAs (and their counters) and answers the new list
    rig.dev.server_lines = [bytes(x) for x in parse(r494).header_lines("Security-Server")]
    rig.edge.receive_esp(captured, DEV_ADDR, 3)         # captured before the restart
    assert rig.out() == [] and rig.edge.esp.drops == {"replay": 1}
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER"), DEV_ADDR, 4)
    (_, data, _), = rig.out("inner")
    rig.edge.receive_inner(response(parse(data), 200, b"OK", [(b"Contact", b"<sip:d@h>;expires=60")]).serialize(),
                           PROXY, 5)
    (_, pkt, _), = rig.out("esp")
    assert int.from_bytes(pkt[4:8], "big") > used   # outbound numbers never repeat
    assert rig.dev.open(pkt)[2].status == 200


def test_max_forwards_zero_gets_483_both_ways(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    from sipling.sip.message import request as mkreq
    hs = rig.dev._common(b"MESSAGE", b"sip:alice@example.test")
    hs = [(n, b"0" if n == b"Max-Forwards" else v) for n, v in hs]
    hs += [(b"Security-Verify", x) for x in rig.dev.server_lines]
    rig.edge.receive_esp(rig.dev.seal_c(mkreq(b"MESSAGE", b"sip:alice@example.test", hs, b"x").serialize()),
                         DEV_ADDR, 1)
    (_, pkt, _), = rig.out("esp")
    assert rig.dev.open(pkt)[2].status == 483
    msg = (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKk9\r\n"
           b"Route: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 0\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
           b"To: <sip:door@example.test>\r\nCall-ID: m9\r\nCSeq: 1 MESSAGE\r\nContent-Length: 0\r\n\r\n")
    rig.edge.receive_inner(msg, PROXY, 2)
    (_, data, _), = rig.out("inner")
    assert parse(data).status == 483


def test_two_devices_with_the_same_spis_do_not_collide(tmp_path):
    rig = Rig(tmp_path)
    other = json.loads((rig.dir / "door.json").read_text())
    other["identity"]["aor"] = "sip:gate@example.test"
    other["identity"]["auth_user"] = "gate"
    other["ipsec"]["ik"], other["ipsec"]["ck"] = "ab" * 16, "cd" * 16
    other.pop("ipsec_man")
    (rig.dir / "gate.json").write_text(json.dumps(other))
    rig.edge.reload(0)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    gate = Device(bytes.fromhex("ab" * 16), bytes.fromhex("cd" * 16), PAIRS, aor="sip:gate@example.test")
    gate.spi_c, gate.spi_s = rig.dev.spi_c, rig.dev.spi_s          # the same SPIs toward the edge
    rig.edge.receive_plain(gate.first_register(("ipsec-3gpp",)), ("127.0.0.1", 4999), 1)
    (_, data, _), = rig.out("plain")
    gate.choose(data, "ipsec-3gpp", "hmac-md5-96", "null")
    rig.edge.receive_esp(gate.protected_request(b"REGISTER"), ("127.0.0.1", 4999), 2)
    (_, data, _), = rig.out("inner")
    assert parse(data).get("Path") == b"<sip:gate@127.0.0.1:5059;lr>"
    # a request for each goes out on its own SAs, to its own address
    for name, dev, addr in (("door", rig.dev, DEV_ADDR), ("gate", gate, ("127.0.0.1", 4999))):
        msg = (b"MESSAGE sip:x@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK" +
               name.encode() + b"\r\nRoute: <sip:" + name.encode() + b"@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\n"
               b"From: <sip:alice@example.test>;tag=a\r\nTo: <sip:x@example.test>\r\nCall-ID: c\r\n"
               b"CSeq: 1 MESSAGE\r\nContent-Length: 2\r\n\r\nhi")
        rig.edge.receive_inner(msg, PROXY, 3)
        (_, pkt, to), = rig.out("esp")
        assert to == addr and dev.open(pkt)[2].body == b"hi"


def test_dialogs_are_record_routed_through_the_edge(tmp_path):
    rig = Rig(tmp_path)
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    inv = (b"INVITE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKi1\r\n"
           b"Route: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
           b"To: <sip:door@example.test>\r\nCall-ID: inv1\r\nCSeq: 1 INVITE\r\n"
           b"Contact: <sip:alice@127.0.0.1:7000>\r\nContent-Length: 0\r\n\r\n")
    rig.edge.receive_inner(inv, PROXY, 1)
    (_, pkt, _), = rig.out("esp")
    got = rig.dev.open(pkt)[2]
    assert got.get_all("Record-Route") == [b"<sip:door@127.0.0.1:5059;lr>"] and got.get("Route") is None
    # the device's BYE follows that route set: the edge removes its own entry and relays
    bye = rig.dev.protected_request(b"BYE", to=b"sip:alice@example.test",
                                    extra=[(b"Route", b"<sip:door@127.0.0.1:5059;lr>")])
    rig.edge.receive_esp(bye, DEV_ADDR, 2)
    (_, data, _), = rig.out("inner")
    assert parse(data).get("Route") is None
    # the device's own INVITE is record-routed on the way up
    rig.edge.receive_esp(rig.dev.protected_request(b"INVITE", to=b"sip:alice@example.test"), DEV_ADDR, 3)
    (_, data, _), = rig.out("inner")
    assert parse(data).get_all("Record-Route") == [b"<sip:door@127.0.0.1:5059;lr>"]


def test_ipsec_man_device_gets_a_protected_494_right_after_an_edge_restart(tmp_path):
    state = str(tmp_path / "state")
    os.mkdir(state)
    rig = Rig(tmp_path / "r", algs=[("hmac-sha-1-96", "aes-cbc")])
    rig.edge = Edge(rig.cfg, BundleStore(str(rig.dir)), EdgeEsp(os.urandom, state), lambda *a: None, os.urandom)
    rig.edge.reload(0)
    rig.register("ipsec-man")
    # the edge restarts with the same state directory; the device does not know
    rig.edge = Edge(rig.cfg, BundleStore(str(rig.dir)), EdgeEsp(os.urandom, state), lambda *a: None, os.urandom)
    rig.edge.reload(0)
    rig.edge.receive_esp(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"x"),
                         DEV_ADDR, 1)
    (_, pkt, _), = rig.out("esp")
    assert rig.dev.open(pkt)[2].status == 494
    assert rig.edge.sessions["door"].drops == {"no-agreement": 1}


def test_a_strangers_plain_register_does_not_break_the_agreement_in_use(tmp_path):
    for kind, pair in (("ipsec-man", (None, None)), ("ipsec-3gpp", ("hmac-sha-1-96", "aes-cbc"))):
        rig = Rig(tmp_path / kind, algs=[("hmac-sha-1-96", "aes-cbc")])
        rig.register(kind, *pair)
        # anyone can send a plain REGISTER naming the device; the edge offers a new list ...
        rig.edge.receive_plain(Device(IK, CK, [("hmac-sha-1-96", "aes-cbc")], rig.man).first_register(),
                               ("127.0.0.1", 6666), 1)
        rig.out("plain")
        # ... but the device, still on its agreement and its list, is served as before
        rig.edge.receive_esp(rig.dev.protected_request(b"MESSAGE", to=b"sip:alice@example.test", body=b"x"),
                             DEV_ADDR, 2)
        assert len(rig.out("inner")) == 1, kind
        assert rig.edge.sessions["door"].drops == {}, kind


def _proxy_message(branch=b"z9hG4bKk1", body=b"set relay on", pai=b"<sip:alice@example.test>"):
    return (b"MESSAGE sip:door@127.0.0.1:5064 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=" + branch +
            b"\r\nRoute: <sip:door@127.0.0.1:5059;lr>\r\nMax-Forwards: 69\r\nFrom: <sip:alice@example.test>;tag=a\r\n"
            b"To: <sip:door@example.test>\r\nCall-ID: m-" + branch + b"\r\nCSeq: 1 MESSAGE\r\n"
            b"P-Asserted-Identity: " + pai + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def test_proxy_side_hears_only_the_proxy(tmp_path):
    # issue 10 finding 2: a forged request sent straight to the edge's inner port (from the
    # LAN, or from another port of the proxy host) never reaches the device
    rig = Rig(tmp_path, algs=[("hmac-sha-1-96", "aes-cbc")])
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    for src in (("192.0.2.66", 5070), ("127.0.0.1", 5071)):
        rig.edge.receive_inner(_proxy_message(), src, 1)
        assert rig.edge.datagrams_to_send() == []
    assert rig.edge.drops == {"not-from-proxy": 2}
    assert any("is not the proxy 127.0.0.1:5070" in t for _, _, t in rig.logs)
    # --no-trust-pai: the proxy's assertion is removed as before
    rig.cfg.trust_pai = False
    rig.edge.receive_inner(_proxy_message(), PROXY, 2)
    (k, pkt, _), = rig.out("esp")
    assert rig.dev.open(pkt)[2].get("P-Asserted-Identity") is None


def test_relayed_retransmissions_keep_one_branch_both_ways(tmp_path):
    # issue 10 finding 5: every copy of a request leaves the edge with the same branch, so
    # the board's (and Kamailio's) server transaction absorbs it; another request differs
    rig = Rig(tmp_path, algs=[("hmac-sha-1-96", "aes-cbc")])
    rig.register("ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
    branches = []
    for br in (b"z9hG4bKk1", b"z9hG4bKk1", b"z9hG4bKk1", b"z9hG4bKk2"):
        rig.edge.receive_inner(_proxy_message(br), PROXY, 1)
        (k, pkt, _), = rig.out("esp")
        branches.append(rig.dev.open(pkt)[2].via_branch())
    assert branches[0] == branches[1] == branches[2] != branches[3]
    assert branches[0].startswith(b"z9hG4bK")
    up = []
    for _ in range(2):
        hs = rig.dev._common(b"MESSAGE", b"sip:alice@example.test")
        hs += [(b"Security-Verify", x) for x in rig.dev.server_lines]
        hs += [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree")]
        sip = request(b"MESSAGE", b"sip:alice@example.test", hs, b"ok").serialize()
        for _ in range(2):  # the same SIP request twice (a retransmission: new ESP sequence number)
            rig.edge.receive_esp(rig.dev.seal_c(sip), DEV_ADDR, 2)
            (k, data, _), = rig.out("inner")
            up.append(parse(data).via_branch())
    assert up[0] == up[1] != up[2] == up[3]


def test_duplicated_plain_register_gets_the_same_offer(tmp_path):
    # issue 10 finding 6: a copy of the first REGISTER is answered with the same SPIs, so the
    # device's choice from whichever answer it read first is still installed
    for challenge in ("494", "401"):
        rig = Rig(tmp_path / challenge, algs=[("hmac-sha-1-96", "aes-cbc")], challenge=challenge)
        first = rig.dev.first_register()
        answers = []
        for _ in range(3):
            rig.edge.receive_plain(first, DEV_ADDR, 0)
            (k, data, _), = rig.out("plain")
            answers.append(data)
        assert answers[0] == answers[1] == answers[2], challenge
        rig.dev.choose(answers[0], "ipsec-3gpp", "hmac-sha-1-96", "aes-cbc")
        if challenge == "494":
            rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER"), DEV_ADDR, 1)
            assert len(rig.out("inner")) == 1
            assert rig.edge.sessions["door"].drops == {}


def test_ipsec_man_fresh_registration_skips_what_a_rebooted_device_refuses(tmp_path):
    # a rebooted board refuses up to MARK_BLOCK - 1 numbers above the last it accepted (its
    # inbound mark is rounded up): the edge leaves them unused when a registration starts
    # with a new Call-ID, and not on a refresh (same Call-ID)
    from sipling.esp.replay import MARK_BLOCK
    rig = Rig(tmp_path, algs=[("hmac-sha-1-96", "aes-cbc")])
    rig.register("ipsec-man")
    pair = rig.edge.esp.pairs[2002][1]
    before = (pair.out_c.counter.last, pair.out_s.counter.last)
    rig.edge.receive_esp(rig.dev.protected_request(b"REGISTER"), DEV_ADDR, 1)   # a refresh
    rig.out("inner")
    assert (pair.out_c.counter.last, pair.out_s.counter.last) == before
    rig.dev.cseq += 1
    req = rig.dev._common(b"REGISTER")
    req = [(n, b"reg-after-reboot@dev" if n == b"Call-ID" else v) for n, v in req]
    req += [(b"Security-Verify", x) for x in rig.dev.server_lines]
    req += [(b"Require", b"sec-agree"), (b"Proxy-Require", b"sec-agree"),
            (b"Contact", b"<sip:door@127.0.0.1:%d>" % rig.dev.port_s), (b"Expires", b"600")]
    rig.edge.receive_esp(rig.dev.seal_c(request(b"REGISTER", b"sip:example.test", req).serialize()), DEV_ADDR, 2)
    rig.out("inner")
    assert (pair.out_c.counter.last, pair.out_s.counter.last) == tuple(b + MARK_BLOCK - 1 for b in before)
