# SA database: the ipsec-3gpp four-SA layout (DESIGN.md section 4), 3GPP key expansion,
# lifetimes, re-keying with a grace period, ipsec-man sequence numbers across a reboot,
# and the inner UDP helper (RFC 768 checksum).
from esp_util import CK, IK, Rng, pair_dbs
from util import raises, unhex

from sipling.esp import codec, integ, seq, udp
from sipling.esp import sa as sam


def test_3gpp_layout_matches_design_table():
    ue = sam.SADB(Rng())
    # UE: spi-c 0x1001, spi-s 0x1002, port-c 5062, port-s 5064; proxy: 0x2001/0x2002, 5066/5068
    p = ue.install_3gpp(0x1001, 0x1002, 5062, 5064, 0x2001, 0x2002, 5066, 5068,
                        "hmac-sha-1-96", "aes-cbc", IK, CK)
    # SA1 UE port-c -> proxy port-s, proxy's spi-s
    assert (p.out_c.spi, p.out_c.sport, p.out_c.dport, p.out_c.inbound) == (0x2002, 5062, 5068, False)
    # SA2 proxy port-c -> UE port-s, UE's spi-s
    assert (p.in_s.spi, p.in_s.sport, p.in_s.dport, p.in_s.inbound) == (0x1002, 5066, 5064, True)
    # SA3 proxy port-s -> UE port-c, UE's spi-c
    assert (p.in_c.spi, p.in_c.sport, p.in_c.dport, p.in_c.inbound) == (0x1001, 5068, 5062, True)
    # SA4 UE port-s -> proxy port-c, proxy's spi-c
    assert (p.out_s.spi, p.out_s.sport, p.out_s.dport, p.out_s.inbound) == (0x2001, 5064, 5066, False)
    assert ue.lookup(0x1001) is p.in_c and ue.lookup(0x1002) is p.in_s
    assert ue.lookup(0x2001) is None  # outbound SPIs are not inbound look-ups
    assert p.outbound_for(5062) is p.out_c and p.outbound_for(5064) is p.out_s
    assert p.outbound_for(5060) is None
    assert "0x00002002" in repr(p.out_c) and "0011" not in repr(p.out_c)


def test_spi_range_and_duplicates():
    db = sam.SADB(Rng())
    sa = db.new_sa(0xFFFFFFFF, True, "hmac-md5-96", IK, "null", b"", 1, 2)
    assert db.lookup(0xFFFFFFFF) is sa
    raises(sam.EspError, db.new_sa, 0xFFFFFFFF, True, "hmac-md5-96", IK, "null", b"", 1, 2)
    raises(sam.EspError, db.new_sa, 200, True, "hmac-md5-96", IK, "null", b"", 1, 2)
    raises(sam.EspError, db.install_3gpp, 0x10, 0x11, 1, 2, 0x20, 0x21, 3, 4,
           "hmac-md5-96", "null", IK, CK)  # reserved SPIs: nothing half-installed
    assert len(db.inbound) == 1 and not db.outbound
    raises(sam.EspError, db.new_sa, 0x4000, True, "null", b"", "null", b"", 1, 2)


def test_3gpp_key_expansion():
    a, e = sam.expand_keys("hmac-sha-1-96", "des-ede3-cbc", IK, CK)
    assert a == IK + b"\x00\x00\x00\x00"
    assert e == CK + CK[:8] and len(e) == 24  # CK1 || CK2 || CK1
    a, e = sam.expand_keys("hmac-md5-96", "aes-cbc", IK, CK)
    assert a == IK and e == CK
    a, e = sam.expand_keys("hmac-sha-256-128", "null", IK, CK)
    assert a == IK + bytes(16) and e == b""
    raises(sam.EspError, sam.expand_keys, "hmac-sha-2", "null", IK, CK)
    raises(sam.EspError, sam.expand_keys, "hmac-md5-96", "des-cbc", IK, CK)
    # the SA really authenticates with IK || 0000 (check the ICV independently)
    db = sam.SADB(Rng())
    p = db.install_3gpp(0x1001, 0x1002, 1, 2, 0x2001, 0x2002, 3, 4, "hmac-sha-1-96", "null", IK, CK)
    pkt = bytes(codec.protect(p.out_c, b"abc"))
    ref = integ.Hmac("hmac-sha-1-96", IK + bytes(4)).digest(pkt[:-12])[:12]
    assert pkt[-12:] == ref


def test_lifetime_expire_and_deadline():
    db = sam.SADB(Rng())
    p = db.install_3gpp(0x1001, 0x1002, 1, 2, 0x2001, 0x2002, 3, 4, "hmac-md5-96", "null",
                        IK, CK, now_ms=10000, lifetime_ms=3600000)
    assert db.next_deadline() == 3610000
    assert db.lookup(0x1001, 3609999) is p.in_c
    assert db.lookup(0x1001, 3610000) is None
    assert db.expire(3609999) == []
    gone = db.expire(3610000)
    assert len(gone) == 4 and not db.inbound and not db.outbound
    assert db.next_deadline() is None


def test_rekey_keeps_old_inbound_until_grace_deadline():
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc")
    in_flight = bytes(codec.protect(p_px.out_c, b"late response"))
    # both ends re-key with fresh SPIs and a fresh port-c (port-s stays)
    n_ue = ue.install_3gpp(0x1101, 0x1102, 5070, 5064, 0x2101, 0x2102, 5072, 5068,
                           "hmac-sha-1-96", "aes-cbc", CK, IK)
    n_px = px.install_3gpp(0x2101, 0x2102, 5072, 5068, 0x1101, 0x1102, 5070, 5064,
                           "hmac-sha-1-96", "aes-cbc", CK, IK)
    ue.retire(p_ue, now_ms=50000, grace_ms=30000)
    assert 0x2002 not in ue.outbound and 0x2102 in ue.outbound
    got = codec.unprotect(ue, in_flight, 60000)  # old inbound SA still accepts
    assert got is p_ue.in_s and bytes(codec.payload(got)) == b"late response"
    fresh = bytes(codec.protect(n_px.out_c, b"new"))
    assert codec.unprotect(ue, fresh, 60000) is n_ue.in_s
    late = bytes(codec.protect(p_px.out_c, b"too late"))
    assert ue.next_deadline() == 80000
    assert len(ue.expire(80000)) == 2
    assert codec.unprotect(ue, late, 80001) is None
    assert ue.drop_counts()["unknown_spi"] == 1


def _man_conf():
    return {"our_spi_c": 0x5001, "our_spi_s": 0x5002, "our_port_c": 5062, "our_port_s": 5064,
            "their_spi_c": 0x6001, "their_spi_s": 0x6002, "their_port_c": 5066,
            "their_port_s": 5068, "alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": IK, "ck": CK}


def test_ipsec_man_sequence_numbers_survive_reboot():
    flash = {}
    writes = []

    def persist(spi, value):
        writes.append((spi, value))
        flash[spi] = value

    def hwm(spi):
        return flash.get(spi, 0)

    seen = []
    db = sam.SADB(Rng(5))
    p = db.install_manual(_man_conf(), hwm, persist, block=4)
    for _ in range(10):
        seen.append(int.from_bytes(bytes(codec.protect(p.out_c, b"x"))[4:8], "big"))
    assert seen == list(range(1, 11))
    assert len(writes) == 3 and flash[0x6002] == 12  # blocks 1-4, 5-8, 9-12
    for _ in range(3):  # simulated reboots, each sending a few packets
        db = sam.SADB(Rng(6))
        p = db.install_manual(_man_conf(), hwm, persist, block=4)
        for _ in range(2):
            seen.append(int.from_bytes(bytes(codec.protect(p.out_c, b"y"))[4:8], "big"))
    for a, b in zip(seen, seen[1:]):
        assert b > a, seen
    # the peer (whose window persists) accepts every one of them
    peer = sam.SADB(Rng(7))
    peer.new_sa(0x6002, True, "hmac-sha-1-96", IK + bytes(4), "aes-cbc", CK, 5062, 5068)
    assert codec.unprotect(peer, bytes(codec.protect(p.out_c, b"z"))) is not None


def test_ipsec_man_inbound_window_restored_after_reboot():
    # the device persisted in_s.window.top = 5 some time before a reboot at top 7
    tx = sam.SADB(Rng(8)).new_sa(0x5002, False, "hmac-sha-1-96", IK + bytes(4), "aes-cbc", CK, 1, 2)
    pkts = [bytes(codec.protect(tx, b"%d" % i)) for i in range(1, 10)]
    db = sam.SADB(Rng(9))
    p = db.install_manual(_man_conf(), lambda spi: 0, lambda spi, v: None,
                          rx_top=lambda spi: 5 if spi == 0x5002 else 0)
    for i in range(5):
        assert codec.unprotect(db, pkts[i]) is None  # 1..5: captured before, refused
    assert db.drop_counts()["replay"] == 5
    assert codec.unprotect(db, pkts[6]) is p.in_s  # 7, then 6 (inside the window), then 9
    assert codec.unprotect(db, pkts[5]) is p.in_s
    assert codec.unprotect(db, pkts[8]) is p.in_s and p.in_s.window.top == 9
    assert p.in_c.window.top == 0


def test_sequence_counter_never_cycles():
    c = seq.Counter()
    c.last = seq.SEQ_MAX - 1
    assert c.take() == seq.SEQ_MAX
    raises(seq.SeqExhausted, c.take)
    stored = []
    r = seq.Reserved(seq.SEQ_MAX - 2, stored.append, block=100)
    assert r.take() == seq.SEQ_MAX - 1 and stored == [seq.SEQ_MAX]
    assert r.take() == seq.SEQ_MAX
    raises(seq.SeqExhausted, r.take)


def test_persist_failure_hands_out_nothing():
    def broken(v):
        raise OSError("flash")
    r = seq.Reserved(7, broken, block=10)
    raises(OSError, r.take)
    assert r.last == 7 and r.limit == 7


def _ref_checksum(src, dst, seg):
    # straightforward RFC 768 / RFC 1071 sum, independent of udp.checksum's modulo trick
    data = bytes(src) + bytes(dst) + b"\x00\x11" + len(seg).to_bytes(2, "big") + bytes(seg)
    if len(data) % 2:
        data += b"\x00"
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
        s = (s & 0xFFFF) + (s >> 16)
    c = (~s) & 0xFFFF
    return c or 0xFFFF


def test_inner_udp_round_trip_and_checksum():
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-256-128", "des-ede3-cbc")
    for body in (b"", b"a", b"REGISTER sip:x SIP/2.0\r\n\r\n", bytes(range(256)) * 3):
        pkt = bytes(udp.protect_udp(p_ue.out_c, "127.0.0.1", b"\x7f\x00\x00\x02", 5062, 5068, body))
        r = udp.open_udp(px, pkt)
        assert r is not None
        sa, sport, dport, data = r
        assert sa is p_px.in_s and (sport, dport) == (5062, 5068) and bytes(data) == body
        seg = bytes(codec.payload(sa))
        zeroed = seg[:6] + b"\x00\x00" + seg[8:]
        assert seg[6:8] == _ref_checksum(b"\x7f\x00\x00\x01", b"\x7f\x00\x00\x02", zeroed).to_bytes(2, "big")
    assert udp.ip4("10.1.2.3") == b"\x0a\x01\x02\x03"
    raises(ValueError, udp.ip4, "10.1.2")


def test_checksum_sum_implementations_agree():
    from sipling.esp import udp as u
    u.checksum(b"\0\0\0\0", b"\0\0\0\0", b"\0" * 8, 8)  # picks the fast sum where possible
    for n in (0, 1, 2, 3, 100, 1001, 1472):
        seg = bytes((i * 131 + 7) & 255 for i in range(n)) if n != 100 else b"\xff" * 100
        assert u._sum16(seg, n) == u._sum16_plain(seg, n), n


def test_inner_udp_bad_header_counts_bad_inner():
    ue, p_ue, px, p_px = pair_dbs("hmac-md5-96", "null")
    assert udp.open_udp(px, bytes(codec.protect(p_ue.out_c, b"abc"))) is None
    assert udp.open_udp(px, bytes(codec.protect(p_ue.out_c, unhex("13c613cc0064000041")))) is None
    assert udp.open_udp(px, bytes(codec.protect(p_ue.out_c, b"x" * 12, 6))) is None
    assert px.drop_counts()["bad_inner"] == 3
