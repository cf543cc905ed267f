# ESP codec (RFC 4303) on both interpreters: round trips for every (auth, enc) pair and
# the inbound drop rules, each with its exact drop reason.
from esp_util import AUTHS, ENCS, IK, Rng, pair_dbs

from sipling.esp import codec
from sipling.esp import sa as sam

MSG = b"MESSAGE sip:owner@example.test SIP/2.0\r\nContent-Length: 6\r\n\r\nstatus"


def _drops(db):
    return db.drop_counts()


def _only(db, reason, count=1):
    d = _drops(db)
    for k in d:
        want = count if k == reason else 0
        assert d[k] == want, (reason, d)


def test_round_trip_every_pair_both_directions():
    for alg in AUTHS:
        for ealg in ENCS:
            ue, p_ue, px, p_px = pair_dbs(alg, ealg)
            for n in (0, 1, 2, 3, 15, 16, 17, len(MSG)):
                data = MSG[:n]
                pkt = bytes(codec.protect(p_ue.out_c, data))
                got = codec.unprotect(px, pkt)
                assert got is p_px.in_s, (alg, ealg, n)
                assert bytes(codec.payload(got)) == data
                assert got.rx_nh == 17
                pkt = bytes(codec.protect(p_px.out_c, data, 6))
                got = codec.unprotect(ue, pkt)
                assert got is p_ue.in_s
                assert bytes(codec.payload(got)) == data and got.rx_nh == 6
            assert _drops(ue) == _drops(px) == dict((k, 0) for k in sam.DROP_NAMES)


def test_packet_layout_rfc4303():
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc")
    p1 = bytes(codec.protect(p_ue.out_c, b"abc"))
    p2 = bytes(codec.protect(p_ue.out_c, b"abc"))
    assert p1[0:4] == b"\x00\x00\x20\x02"  # SA1 uses the proxy's spi-s
    assert p1[4:8] == b"\x00\x00\x00\x01" and p2[4:8] == b"\x00\x00\x00\x02"
    assert len(p1) == 8 + 16 + 16 + 12  # 3 + pad 11 + 2 = one AES block, ICV 12
    assert p1[8:24] != p2[8:24]  # fresh IV per packet
    s4 = bytes(codec.protect(p_ue.out_s, b"x" * 30))
    assert s4[0:4] == b"\x00\x00\x20\x01"  # SA4 uses the proxy's spi-c
    assert len(s4) == 8 + 16 + 32 + 12
    n1 = pair_dbs("hmac-md5-96", "null")[1]
    pk = bytes(codec.protect(n1.out_c, b"abcde"))
    # null: payload visible, pad to 4-byte alignment with 1, 2, 3..., padlen, next header
    assert pk[8:13] == b"abcde" and pk[13:16] == b"\x01\x01\x11" and len(pk) == 16 + 12


def test_flipped_bit_at_every_byte_is_dropped():
    for alg in AUTHS:
        for ealg in ENCS:
            ue, p_ue, px, p_px = pair_dbs(alg, ealg)
            for _ in range(5):
                pkt = bytes(codec.protect(p_ue.out_c, MSG[:40]))  # seq 5
            for i in range(len(pkt)):
                bad = bytearray(pkt)
                bad[i] ^= 1 << (i % 8)
                before = dict(_drops(px))
                assert codec.unprotect(px, bytes(bad)) is None, (alg, ealg, i)
                after = _drops(px)
                reason = "unknown_spi" if i < 4 else "bad_icv"
                assert after[reason] == before[reason] + 1, (alg, ealg, i, after)
            # the forgeries did not move the window: the genuine packet still passes, once
            assert codec.unprotect(px, pkt) is p_px.in_s
            assert codec.unprotect(px, pkt) is None
            assert _drops(px)["replay"] == 1


def test_replay_and_window():
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc")
    pkts = [bytes(codec.protect(p_ue.out_c, b"n%d" % i)) for i in range(1, 301)]
    assert codec.unprotect(px, pkts[0]) is not None
    assert codec.unprotect(px, pkts[0]) is None
    _only(px, "replay")
    assert codec.unprotect(px, pkts[199]) is not None  # seq 200 moves the window
    assert codec.unprotect(px, pkts[149]) is not None  # 150: inside a 128 window, unseen
    assert codec.unprotect(px, pkts[149]) is None  # ... and now seen
    assert codec.unprotect(px, pkts[72]) is not None  # 73: 200-73 = 127 < 128, still inside
    assert codec.unprotect(px, pkts[71]) is None  # 72: left of the window
    _only(px, "replay", 3)
    win = p_px.in_s.window
    assert win.size >= 64 and win.top == 200


def test_wrong_spi_and_expired_sa_are_unknown_spi():
    ue, p_ue, px, p_px = pair_dbs("hmac-md5-96", "des-ede3-cbc")
    pkt = bytearray(codec.protect(p_ue.out_c, b"hello"))
    pkt[0:4] = b"\x00\x00\x99\x99"
    assert codec.unprotect(px, bytes(pkt)) is None
    _only(px, "unknown_spi")
    px2 = sam.SADB(Rng(3))
    sa_in = px2.new_sa(0x3000, True, "hmac-md5-96", IK, "null", b"", 1, 2, now_ms=1000,
                       lifetime_ms=500)
    tx = sam.SADB(Rng(4)).new_sa(0x3000, False, "hmac-md5-96", IK, "null", b"", 1, 2)
    good = bytes(codec.protect(tx, b"a"))
    assert codec.unprotect(px2, good, 1499) is sa_in
    assert codec.unprotect(px2, bytes(codec.protect(tx, b"b")), 1500) is None
    _only(px2, "unknown_spi")


def test_truncated_packets():
    for alg in AUTHS:
        for ealg in ENCS:
            ue, p_ue, px, p_px = pair_dbs(alg, ealg)
            pkt = bytes(codec.protect(p_ue.out_c, MSG))
            sa_in = p_px.in_s
            icv = sa_in.auth.icv_len
            for n in range(len(pkt)):
                before = dict(_drops(px))
                assert codec.unprotect(px, pkt[:n]) is None
                ct = n - 8 - sa_in.enc.iv_len - icv
                blk = sa_in.enc.block
                short = n < 8 or ct < 2 or (ealg != "null" and ct % blk != 0)
                reason = "too_short" if short else "bad_icv"
                assert _drops(px)[reason] == before[reason] + 1, (alg, ealg, n)
            # trailing garbage shifts the ICV position: an authentication failure
            assert codec.unprotect(px, pkt + b"\x00") is None


def _forge(sa_out, plain_trailer, nh=17):
    # A correctly authenticated packet around arbitrary cleartext (payload+pad+padlen+nh
    # supplied by the test), built with the SA's own cipher and ICV.
    b = sa_out.buf
    po = sa_out.payload_off
    n = len(plain_trailer)
    b[0:4] = sa_out.spi.to_bytes(4, "big")
    b[4:8] = sa_out.counter.take().to_bytes(4, "big")
    b[po:po + n] = plain_trailer
    sa_out.enc.encrypt(b, sa_out.mv, 8, n)  # writes the IV at 8, encrypts after it
    sa_out.auth.icv_into(sa_out.mv[0:po + n], b, po + n)
    return bytes(b[0:po + n + sa_out.auth.icv_len])


def test_bad_padding_authenticated_and_null_auth():
    for alg in ("hmac-sha-1-96", "null"):
        for ealg in ENCS:
            if alg == "null" and ealg == "null":
                continue
            ue, p_ue, px, p_px = pair_dbs(alg, ealg)
            good = b"abcd" + bytes(range(1, 11)) + bytes([10, 17])  # 16: aligned for all
            ok = _forge(p_ue.out_c, good)
            assert codec.unprotect(px, ok) is p_px.in_s, (alg, ealg)
            assert bytes(codec.payload(p_px.in_s)) == b"abcd"
            wrong = bytearray(good)
            wrong[5] ^= 0x40  # second pad byte should be 2
            assert codec.unprotect(px, _forge(p_ue.out_c, bytes(wrong))) is None
            too_long = bytearray(good)
            too_long[-2] = 15  # pad length beyond the payload
            assert codec.unprotect(px, _forge(p_ue.out_c, bytes(too_long))) is None
            _only(px, "bad_pad", 2)


def test_null_auth_still_checks_replay():
    ue, p_ue, px, p_px = pair_dbs("null", "aes-cbc")
    pkt = bytes(codec.protect(p_ue.out_c, b"x"))
    assert codec.unprotect(px, pkt) is not None
    assert codec.unprotect(px, pkt) is None
    _only(px, "replay")


def test_oversized_payload_is_local_error():
    from util import raises
    ue, p_ue, px, p_px = pair_dbs("hmac-sha-1-96", "aes-cbc", mtu=200)
    raises(sam.EspError, codec.protect, p_ue.out_c, b"x" * 190)
    assert codec.unprotect(px, b"\x00\x00\x10\x02" + bytes(400)) is None


def test_no_live_heap_growth_in_steady_state():
    # MicroPython: after warm-up, 300 protect/unprotect round trips leave the live heap
    # exactly where it was (per-packet garbage is only hashlib's; see make bench).
    from util import IS_MICROPYTHON
    if not IS_MICROPYTHON:
        return
    import gc
    from sipling.esp import udp
    for alg, ealg in (("hmac-sha-1-96", "aes-cbc"), ("hmac-md5-96", "des-ede3-cbc"),
                      ("hmac-sha-256-128", "null")):
        ue, p_ue, px, p_px = pair_dbs(alg, ealg)
        pkt = bytearray(1100)
        body = b"x" * 500
        src = b"\x7f\x00\x00\x01"

        def run(n):
            for _ in range(n):
                m = udp.protect_udp(p_ue.out_c, src, src, 5062, 5068, body)
                k = len(m)
                pkt[0:k] = m
                assert udp.open_udp(px, memoryview(pkt)[0:k]) is not None
        run(20)
        gc.collect()
        a = gc.mem_alloc()
        run(300)
        gc.collect()
        assert gc.mem_alloc() - a == 0, (alg, ealg)


def test_garbage_never_raises():
    # Remote garbage is dropped and counted, never raised (DESIGN.md 5.6): random lengths,
    # random bytes behind real SPIs, and mutated real packets.
    from sipling.esp import udp
    rng = Rng(42)
    for alg, ealg in (("hmac-sha-1-96", "aes-cbc"), ("hmac-md5-96", "des-ede3-cbc"),
                      ("null", "aes-cbc"), ("hmac-sha-256-128", "null")):
        ue, p_ue, px, p_px = pair_dbs(alg, ealg, mtu=600)
        real = bytes(codec.protect(p_ue.out_c, MSG))
        total = accepted = 0
        for i in range(150):
            n = rng(1)[0] * 3 % 700
            body = bytearray(rng(n))
            if n >= 4 and i % 2:
                body[0:4] = b"\x00\x00\x20\x02"  # SA2's SPI at the proxy
            if i % 5 == 0:
                body = bytearray(real)
                body[rng(1)[0] % len(body)] ^= 1 + rng(1)[0] % 255
            r = udp.open_udp(px, bytes(body))
            total += 1
            if r is not None:  # only possible without integrity
                assert alg == "null"
                accepted += 1
        assert sum(px.drops) + accepted == total  # every datagram accepted or counted once
