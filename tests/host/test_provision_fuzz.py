"""Remote garbage on the console never breaks the device side of provisioning: any bytes,
any well-framed request with any payload, in any order -> only OK/ERR replies, no
exception, and the config on flash is always one that was committed whole."""
import hashlib
import struct

from hypothesis import given, settings, strategies as st

from sipling.provision import frame
from sipling.provision.device import Provisioner
from sipling.provision.store import Store
from sipling.shell import fs as realfs

GOOD = b'{"version": 1, "pad": "' + b"x" * 300 + b'"}'


def _replies(out):
    got = []
    for line in out.split(b"\n")[:-1]:
        assert line[:1] == frame.MARKER
        ver, t, seq, pl = frame.decode(line[1:])
        assert ver == frame.VERSION and t in (frame.OK, frame.ERR)
        got.append((t, seq, pl))
    return got


def _dev(tmp):
    s = Store(realfs, str(tmp / "sipling.json"))
    s.recover()
    return Provisioner(s)


def _commit_good(p):
    sha = hashlib.sha256(GOOD).digest()
    p.feed(frame.encode(frame.BEGIN, 1, struct.pack(">I", len(GOOD)) + sha + b"config"))
    for off in range(0, len(GOOD), 128):
        p.feed(frame.encode(frame.CHUNK, 2, struct.pack(">I", off) + GOOD[off:off + 128]))
    assert _replies(p.feed(frame.encode(frame.COMMIT, 3, sha)))[0][0] == frame.OK


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=600))
def test_any_bytes(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("fz")
    p = _dev(tmp)
    _commit_good(p)
    _replies(p.feed(data + b"\n"))
    Store(realfs, str(tmp / "sipling.json")).recover()
    assert (tmp / "sipling.json").read_bytes() == GOOD


_req = st.tuples(st.sampled_from([frame.HELLO, frame.BEGIN, frame.CHUNK, frame.COMMIT, frame.FPRINT,
                                  frame.ABORT, frame.BYE, 0, 8, 0x80, 0x81, 255]),
                 st.integers(0, 255), st.binary(max_size=200))


_begin = st.tuples(st.just(frame.BEGIN), st.integers(0, 255),
                   st.builds(lambda n, d, name: struct.pack(">I", n) + d + name,
                             st.integers(0, 2 ** 32 - 1), st.binary(min_size=32, max_size=32),
                             st.binary(max_size=12)))


@settings(max_examples=150, deadline=None)
@given(reqs=st.lists(st.one_of(_req, _begin), max_size=12),
       sizes=st.lists(st.integers(0, 70000), max_size=3))
def test_any_framed_requests(tmp_path_factory, reqs, sizes):
    tmp = tmp_path_factory.mktemp("fz")
    p = _dev(tmp)
    _commit_good(p)
    committed = {GOOD}
    for t, seq, pl in reqs:
        if t == frame.BEGIN and sizes and len(pl) < 36:
            pl = struct.pack(">I", sizes.pop()) + pl[4:36].ljust(32, b"\0") + b"config"
        out = p.feed(frame.encode(t, seq, pl))
        for rt, rseq, rpl in _replies(out):
            assert rseq == seq
            if t == frame.COMMIT and rt == frame.OK:
                committed.add((tmp / "sipling.json").read_bytes())
    Store(realfs, str(tmp / "sipling.json")).recover()
    on_flash = (tmp / "sipling.json").read_bytes()
    assert on_flash in committed
    assert hashlib.sha256(on_flash).digest() == p.store.fingerprint()
