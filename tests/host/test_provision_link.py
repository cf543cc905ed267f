"""Host end of provisioning (Link, push) against the device core in-process, over a
lossy fake serial line: retries on timeouts and NAKs, stale replies, corrupted bytes."""
import hashlib
import json
import random

import pytest
from hypothesis import given, settings, strategies as st

from sipling.provision import frame
from sipling.provision.device import Provisioner
from sipling.provision.store import Store
from sipling.shell import fs as realfs
from sipling_host import provision


class LossySerial:
    """Feeds what the host writes into a Provisioner; damages traffic as told."""

    def __init__(self, prov, drop_req=(), drop_rep=(), flip_req=(), flip_rep=(), noise=b""):
        self.prov = prov
        self.buf = bytearray(noise)
        self.n_req = 0
        self.n_rep = 0
        self.drop_req, self.drop_rep = set(drop_req), set(drop_rep)
        self.flip_req, self.flip_rep = dict(flip_req), dict(flip_rep)

    def write(self, data):
        i = self.n_req
        self.n_req += 1
        if i in self.drop_req:
            return len(data)
        if i in self.flip_req:
            data = bytearray(data)
            data[self.flip_req[i] % len(data)] ^= 0x01
            data = bytes(data)
        rep = self.prov.feed(data)
        j = self.n_rep
        self.n_rep += 1
        if rep and j not in self.drop_rep:
            if j in self.flip_rep:
                rep = bytearray(rep)
                rep[self.flip_rep[j] % len(rep)] ^= 0x01
            self.buf += b"some log line\n" + bytes(rep)
        return len(data)

    def flush(self):
        pass

    @property
    def in_waiting(self):
        return len(self.buf)

    def read(self, n=1):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _dev(tmp_path):
    s = Store(realfs, str(tmp_path / "sipling.json"))
    s.recover()
    return Provisioner(s, fw="t")


def _cfg(n):
    return json.dumps({"version": 1, "pad": list(range(n)), "identity": {"password": "pw%d" % n}}).encode()


def test_clean_push(tmp_path):
    p = _dev(tmp_path)
    ser = LossySerial(p)
    texts = []
    link = provision.Link(ser, timeout=0.05, on_text=texts.append)
    assert provision.hello(link)["fp"] == {"config": None}
    data = _cfg(200)
    sha = provision.push(link, data)
    assert sha == hashlib.sha256(data).digest()
    assert provision.fingerprints(link) == {"config": sha.hex()}
    assert (tmp_path / "sipling.json").read_bytes() == data
    assert link.resends == 0
    assert texts and set(texts) == {"some log line"}


def test_lost_request_and_lost_reply_are_resent(tmp_path):
    p = _dev(tmp_path)
    # request 2 (first CHUNK) lost, reply to request 3 lost (chunk acked, ack lost),
    # last COMMIT reply lost: the device answers the repeated COMMIT with OK again
    data = _cfg(120)
    n_chunks = (len(data) + 127) // 128
    commit = 2 + n_chunks
    ser = LossySerial(p, drop_req={2}, drop_rep={3, commit + 1})
    link = provision.Link(ser, timeout=0.02)
    provision.hello(link)
    provision.push(link, data)
    assert (tmp_path / "sipling.json").read_bytes() == data
    assert link.resends == 3


def test_corrupted_request_gets_e_frame_and_is_resent(tmp_path):
    p = _dev(tmp_path)
    ser = LossySerial(p, flip_req={1: 20, 3: 7})
    link = provision.Link(ser, timeout=0.02)
    provision.hello(link)
    data = _cfg(100)
    provision.push(link, data)
    assert link.resends == 2
    assert (tmp_path / "sipling.json").read_bytes() == data


def test_device_error_surfaces(tmp_path):
    p = _dev(tmp_path)
    link = provision.Link(LossySerial(p), timeout=0.02)
    with pytest.raises(provision.DeviceError) as e:
        link.request(frame.CHUNK, b"\x00\x00\x00\x00abc")
    assert e.value.code == frame.E_STATE
    with pytest.raises(provision.DeviceError) as e:
        provision.push(link, bytes(20000))
    assert e.value.code == frame.E_SIZE


def test_silent_device_times_out(tmp_path):
    p = _dev(tmp_path)
    ser = LossySerial(p, drop_rep=set(range(100)))
    link = provision.Link(ser, timeout=0.01, retries=2)
    with pytest.raises(provision.LinkTimeout):
        provision.hello(link)
    assert ser.n_req == 3


def test_stale_reply_with_other_seq_ignored(tmp_path):
    p = _dev(tmp_path)
    stale = frame.encode(frame.OK, 0x77, b"stale")
    link = provision.Link(LossySerial(p, noise=stale), timeout=0.05)
    link.seq = 0x10
    assert provision.fingerprints(link) == {"config": None}


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_damage_never_leaves_a_broken_config(tmp_path_factory, seed):
    tmp = tmp_path_factory.mktemp("lossy")
    rng = random.Random(seed)
    old, new = _cfg(50), _cfg(90)
    p = _dev(tmp)
    provision.push(provision.Link(LossySerial(p), timeout=0.01), old)
    kw = {k: {rng.randrange(15): rng.randrange(300) for _ in range(rng.randrange(3))}
          for k in ("flip_req", "flip_rep")}
    kw.update({k: {rng.randrange(15) for _ in range(rng.randrange(3))} for k in ("drop_req", "drop_rep")})
    link = provision.Link(LossySerial(p, **kw), timeout=0.005, retries=4)
    try:
        provision.push(link, new)
        ok = True
    except (provision.LinkTimeout, provision.DeviceError):
        ok = False
    Store(realfs, str(tmp / "sipling.json")).recover()
    got = (tmp / "sipling.json").read_bytes()
    assert got == new if ok else got in (old, new)
