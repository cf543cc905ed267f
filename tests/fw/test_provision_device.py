# Device side of provisioning (sans-IO) on a real store (both interpreters).
import hashlib
import json
import os
import struct

from sipling import log
from sipling.shell import fs as realfs
from sipling.provision import frame
from sipling.provision.store import Store
from sipling.provision.device import Provisioner

import tmpdirs

def _dev(d, **kw):
    st = Store(realfs, d + "/sipling.json")
    st.recover()
    return Provisioner(st, fw="test", **kw)


def _reply(p, ftype, seq, payload=b""):
    out = p.feed(frame.encode(ftype, seq, payload))
    assert out[:1] == frame.MARKER and out[-1:] == b"\n" and out.count(b"\n") == 1
    ver, t, s, pl = frame.decode(out[1:-1])
    return t, s, pl


def _session(data, name="config"):
    """The request lines a host sends for `data` (acks assumed)."""
    sha = hashlib.sha256(data).digest()
    out = [frame.encode(frame.HELLO, 1), frame.encode(frame.BEGIN, 2, struct.pack(">I", len(data)) + sha + name.encode())]
    seq = 3
    for off in range(0, len(data), frame.CHUNK_SIZE):
        out.append(frame.encode(frame.CHUNK, seq, struct.pack(">I", off) + data[off:off + frame.CHUNK_SIZE]))
        seq += 1
    out.append(frame.encode(frame.COMMIT, seq, sha))
    return b"".join(out)


def _cfg(tag, n=30):
    return json.dumps({"version": 1, "tag": tag, "pad": [tag] * n}).encode()


def test_hello_reports_protocol_and_no_config():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    t, s, pl = _reply(p, frame.HELLO, 5)
    info = json.loads(pl)
    assert (t, s) == (frame.OK, 5)
    assert info["proto"] == 1 and info["chunk"] == frame.CHUNK_SIZE and info["fw"] == "test"
    assert info["fp"] == {"config": None}
    tmpdirs.remove(d)


def test_full_transfer_commits_and_fingerprints():
    d = tmpdirs.make("sipling-fw-prov")
    done = []
    p = _dev(d, on_commit=done.append)
    data = _cfg("new")
    out = p.feed(_session(data))
    kinds = [frame.decode(x)[1] for x in out.split(b"\n")[:-1] for x in [x[1:]]]
    assert kinds == [frame.OK] * (3 + (len(data) + frame.CHUNK_SIZE - 1) // frame.CHUNK_SIZE)
    last = frame.decode(out.split(b"\n")[-2][1:])
    assert last[3] == hashlib.sha256(data).digest()
    assert done == ["config"]
    t, s, pl = _reply(p, frame.FPRINT, 9)
    import binascii
    assert json.loads(pl) == {"config": binascii.hexlify(hashlib.sha256(data).digest()).decode()}
    assert Store(realfs, d + "/sipling.json").read() == data
    tmpdirs.remove(d)


def test_duplicate_chunk_acked_not_rewritten_and_gap_naked():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    data = bytes(range(200)) + b"end"
    sha = hashlib.sha256(data).digest()
    assert _reply(p, frame.BEGIN, 1, struct.pack(">I", len(data)) + sha + b"config")[0] == frame.OK
    c0 = struct.pack(">I", 0) + data[:128]
    assert _reply(p, frame.CHUNK, 2, c0) == (frame.OK, 2, struct.pack(">I", 128))
    assert _reply(p, frame.CHUNK, 2, c0) == (frame.OK, 2, struct.pack(">I", 128))
    t, s, pl = _reply(p, frame.CHUNK, 3, struct.pack(">I", 150) + data[150:])
    assert (t, pl) == (frame.ERR, bytes([frame.E_OFFSET]) + struct.pack(">I", 128))
    assert _reply(p, frame.CHUNK, 4, struct.pack(">I", 128) + data[128:])[2] == struct.pack(">I", len(data))
    assert _reply(p, frame.COMMIT, 5, sha) == (frame.OK, 5, sha)
    # a repeated COMMIT whose reply was lost is still OK; another digest is not
    assert _reply(p, frame.COMMIT, 5, sha) == (frame.OK, 5, sha)
    assert _reply(p, frame.COMMIT, 6, bytes(32))[2][0] == frame.E_STATE
    tmpdirs.remove(d)


def test_negative_replies():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    sha = hashlib.sha256(b"abc").digest()
    assert _reply(p, frame.CHUNK, 1, struct.pack(">I", 0) + b"abc")[2][0] == frame.E_STATE
    assert _reply(p, 0x42, 2)[2][0] == frame.E_TYPE
    assert _reply(p, frame.BEGIN, 3, struct.pack(">I", 3) + sha + b"wifi")[2][0] == frame.E_NAME
    assert _reply(p, frame.BEGIN, 4, struct.pack(">I", 1 << 20) + sha + b"config")[2][0] == frame.E_SIZE
    assert _reply(p, frame.BEGIN, 5, struct.pack(">I", 3) + sha + b"config")[0] == frame.OK
    assert _reply(p, frame.COMMIT, 6, sha)[2][0] == frame.E_SIZE
    assert _reply(p, frame.CHUNK, 7, struct.pack(">I", 0) + b"abcd")[2][0] == frame.E_SIZE
    assert _reply(p, frame.CHUNK, 8, struct.pack(">I", 0) + b"abX")[0] == frame.OK
    assert _reply(p, frame.CHUNK, 8, struct.pack(">I", 2) + b"X")[0] == frame.OK
    # contents differ from the announced digest
    t, s, pl = _reply(p, frame.COMMIT, 9, sha)
    assert (t, pl) == (frame.ERR, frame.err_payload(frame.E_DIGEST, "digest"))
    assert os.listdir(d) == []
    tmpdirs.remove(d)


def test_bad_crc_and_version():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    raw = bytearray(frame.pack(frame.HELLO, 3))
    raw[-1] ^= 1
    import binascii
    out = p.feed(frame.MARKER + binascii.b2a_base64(bytes(raw)).strip() + b"\n")
    assert frame.decode(out[1:-1]) == (1, frame.ERR, 0, frame.err_payload(frame.E_FRAME, "crc"))
    raw = bytearray(frame.pack(frame.HELLO, 3))
    raw[0] = 2
    raw = bytes(raw[:-4]) + struct.pack(">I", frame.crc32(bytes(raw[:-4])))
    out = p.feed(frame.MARKER + binascii.b2a_base64(raw).strip() + b"\n")
    assert frame.decode(out[1:-1]) == (1, frame.ERR, 3, bytes([frame.E_VERSION, 1]))
    tmpdirs.remove(d)


def test_text_lines_ignored_and_abort():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    assert p.feed(b"status\r\nhello there\n") == b""
    data = _cfg("x")
    sha = hashlib.sha256(data).digest()
    _reply(p, frame.BEGIN, 1, struct.pack(">I", len(data)) + sha + b"config")
    assert os.listdir(d) == ["sipling.json.new"]
    assert _reply(p, frame.ABORT, 2) == (frame.OK, 2, b"")
    assert os.listdir(d) == []
    tmpdirs.remove(d)


def test_no_key_bytes_in_replies_or_log():
    d = tmpdirs.make("sipling-fw-prov")
    lines = []
    log.set_sink(lines.append)
    log.set_level("debug")
    p = _dev(d)
    secret = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa"
    data = json.dumps({"version": 1, "ipsec": {"ik": secret}}).encode()
    out = p.feed(_session(data))
    out += p.feed(frame.encode(frame.FPRINT, 50))
    log.set_sink(None)
    log.set_level("info")
    replies = b"".join(frame.decode(x[1:])[3] for x in out.split(b"\n")[:-1])
    assert secret.encode() not in replies
    assert secret not in "".join(lines)
    assert any("committed config" in ln for ln in lines)
    tmpdirs.remove(d)


def test_cut_at_random_byte_then_reboot_old_or_new():
    # 60 cuts of the byte stream at random offsets; after each the device "reboots"
    # (fresh store + recover): it must hold the old or the new complete config, and a
    # full provisioning afterwards must succeed.
    d = tmpdirs.make("sipling-fw-prov")
    old, new = _cfg("old", 20), _cfg("new", 35)
    first = _session(old)
    _dev(d).feed(first)
    stream = _session(new)
    import random
    for i in range(60):
        cut = random.getrandbits(16) % len(stream)
        p = _dev(d)
        p.feed(stream[:cut])
        booted = _dev(d).store.read()   # power cut: the new boot never sees p again
        assert booted in (old, new), (cut, booted)
        p = _dev(d)
        p.feed(stream[:cut])            # link dropped: the same boot goes on
        p.feed(_session(old))
        assert p.store.read() == old
    tmpdirs.remove(d)


def test_bye_ends_a_repl_session_and_drops_an_open_transfer():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    data = _cfg("x")
    _reply(p, frame.BEGIN, 1, struct.pack(">I", len(data)) + hashlib.sha256(data).digest() + b"config")
    assert not p.bye
    assert _reply(p, frame.BYE, 2) == (frame.OK, 2, b"")
    assert p.bye
    assert os.listdir(d) == []
    tmpdirs.remove(d)


def test_begin_with_undecodable_name_is_refused():
    d = tmpdirs.make("sipling-fw-prov")
    p = _dev(d)
    t, s, pl = _reply(p, frame.BEGIN, 4, bytes(36) + b"\xff\xfe")
    assert (t, s, pl) == (frame.ERR, 4, frame.err_payload(frame.E_NAME, "unknown file"))
    assert _reply(p, frame.HELLO, 5)[0] == frame.OK
    tmpdirs.remove(d)
