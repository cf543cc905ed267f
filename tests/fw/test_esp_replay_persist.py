# ipsec-man inbound replay protection across reboots (RFC 4303 3.4.3): manual keys never
# change, so the window top is persisted (esp/replay.py Window.reserve, rounded UP in
# blocks) and restored at install; nothing accepted before a reboot is accepted after it.
from esp_util import CK, IK, Rng
from util import raises

from sipling.esp import codec, replay
from sipling.esp import sa as sam


def _conf():
    return {"our_spi_c": 0x5001, "our_spi_s": 0x5002, "our_port_c": 5062, "our_port_s": 5064,
            "their_spi_c": 0x6001, "their_spi_s": 0x6002, "their_port_c": 5066,
            "their_port_s": 5068, "alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": IK, "ck": CK}


def _boot(flash, writes=None):
    def persist(spi, v):
        if writes is not None:
            writes.append((spi, v))
        flash[spi] = v
    db = sam.SADB(Rng(9))
    p = db.install_manual(_conf(), lambda spi: 0, lambda spi, v: None,
                          rx_top=lambda spi: flash.get(spi, 0), rx_persist=persist)
    return db, p


def _sender():
    # the proxy's SA toward our spi-s (0x5002)
    return sam.SADB(Rng(8)).new_sa(0x5002, False, "hmac-sha-1-96", IK + bytes(4), "aes-cbc", CK, 1, 2)


def test_reserve_persists_rounded_up_once_per_block():
    w = replay.Window()
    stored = []
    w.reserve(stored.append, 8)
    for s in range(1, 20):
        assert w.check(s)
        w.update(s)
        assert stored[-1] >= s  # never below an accepted number
    assert stored == [8, 16, 24] and w.writes == 3
    w.update(100)  # a jump: the mark goes ahead of the new top
    assert stored[-1] == 107


def test_reserve_failure_accepts_nothing():
    w = replay.Window()

    def full(v):
        raise OSError(28)
    w.reserve(full, 8)
    raises(OSError, w.update, 1)
    assert w.top == 0 and w.check(1) and w.writes == 0


def test_packets_accepted_before_reboot_are_refused_after_it():
    flash = {}
    writes = []
    tx = _sender()
    pkts = [bytes(codec.protect(tx, b"%d" % i)) for i in range(1, 31)]  # seq 1..30
    db, p = _boot(flash, writes)
    order = [2, 1, 5, 4, 10, 9, 12]  # out of order inside the window, as networks deliver
    for s in order:
        assert codec.unprotect(db, pkts[s - 1]) is p.in_s
    assert p.in_s.window.top == 12
    assert writes == [(0x5002, 9), (0x5002, 17)]  # rounded up, one write per block of 8
    mark = flash[0x5002]
    # reboot: none of the accepted packets (nor 3, 6..8, 11, skipped by the sender's
    # network but below the stored mark) is accepted again
    db, p = _boot(flash)
    for s in range(1, 13):
        assert codec.unprotect(db, pkts[s - 1]) is None
    assert db.drop_counts()["replay"] == 12
    # numbers the sender had not used yet: at most rx_block - 1 of them are lost (refused,
    # never replayed), then new packets are accepted again
    first = None
    for s in range(13, 31):
        if codec.unprotect(db, pkts[s - 1]) is p.in_s:
            first = s
            break
    assert first == mark + 1
    assert first - 13 <= 7
    assert p.in_s.window.top == first
    # and after a second reboot the post-reboot packet is refused too
    db, p = _boot(flash)
    assert codec.unprotect(db, pkts[first - 1]) is None
    assert codec.unprotect(db, pkts[29]) is p.in_s  # 30 is new


def test_other_inbound_sa_keeps_its_own_mark():
    flash = {}
    db, p = _boot(flash)
    tx = _sender()
    assert codec.unprotect(db, bytes(codec.protect(tx, b"x"))) is p.in_s
    assert flash == {0x5002: 8}  # the in_c SA (0x5001) saw nothing: no mark, nothing refused
    db, p = _boot(flash)
    assert p.in_c.window.top == 0 and p.in_s.window.top == 8


def test_counters_skip_numbers_and_persist_before_using_them():
    from sipling.esp import seq
    c = seq.Counter()
    c.take()
    c.skip(7)
    assert c.take() == 9
    stored = []
    r = seq.Reserved(0, stored.append, block=4)
    assert r.take() == 1 and stored == [4]
    r.skip(7)
    assert r.take() == 9 and stored == [4, 12]   # the new mark is stored before 9 is used
