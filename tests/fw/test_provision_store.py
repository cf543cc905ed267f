# Atomic key/config store on a real filesystem (both interpreters), and crash cuts.
import os

from util import raises
import tmpdirs
from sipling.shell import fs as realfs
from sipling.provision.store import Store, StoreError
from sipling.provision import store as store_mod


class Crash(Exception):
    pass


def _sha(b):
    import hashlib
    return hashlib.sha256(b).digest()


class _CrashFile:
    def __init__(self, f, fs):
        self.f = f
        self.fs = fs

    def write(self, data):
        left = self.fs.budget
        if left is not None and len(data) >= left:
            self.f.write(data[:left])
            self.f.close()
            raise Crash()
        if left is not None:
            self.fs.budget -= len(data)
        return self.f.write(data)

    def read(self, n=-1):
        return self.f.read(n)

    def close(self):
        self.f.close()


class CrashFS:
    """The real fs with a power cut after `budget` written bytes or `ops` renames/removes;
    no_replace=True behaves like FAT (rename refuses an existing target)."""

    def __init__(self, budget=None, ops=None, no_replace=False):
        self.budget = budget
        self.ops = ops
        self.no_replace = no_replace

    def _op(self):
        if self.ops is not None:
            if self.ops == 0:
                raise Crash()
            self.ops -= 1

    def open(self, path, mode="rb"):
        f = realfs.open(path, mode)
        return _CrashFile(f, self) if "w" in mode else f

    def rename(self, a, b):
        if self.no_replace and realfs.exists(b):
            raise OSError(17)
        self._op()
        realfs.rename(a, b)

    def remove(self, p):
        self._op()
        realfs.remove(p)

    def exists(self, p):
        return realfs.exists(p)


def _put(st, data):
    st.begin()
    st.write(data[:5])
    st.write(data[5:])
    return st.commit(_sha(data))


def test_commit_replaces_and_fingerprints():
    d = tmpdirs.make("sipling-fw-store")
    st = Store(realfs, d + "/cfg.json")
    assert st.read() is None and st.fingerprint() is None
    assert _put(st, b'{"version": 1}') == _sha(b'{"version": 1}')
    assert st.read() == b'{"version": 1}'
    _put(st, b'{"version": 2}')
    assert st.read() == b'{"version": 2}'
    assert st.fingerprint() == _sha(b'{"version": 2}')
    assert sorted(os.listdir(d)) == ["cfg.json"]
    tmpdirs.remove(d)


def test_wrong_digest_keeps_old_and_removes_temp():
    d = tmpdirs.make("sipling-fw-store")
    st = Store(realfs, d + "/cfg.json")
    _put(st, b"old content")
    st.begin()
    st.write(b"new content")
    e = raises(StoreError, st.commit, _sha(b"other"))
    assert str(e) == "digest"
    assert st.read() == b"old content"
    assert sorted(os.listdir(d)) == ["cfg.json"]
    tmpdirs.remove(d)


def test_abort_and_misuse():
    d = tmpdirs.make("sipling-fw-store")
    st = Store(realfs, d + "/cfg.json")
    raises(StoreError, st.write, b"x")
    raises(StoreError, st.commit, _sha(b""))
    st.begin()
    st.write(b"abc")
    assert st.active()
    st.abort()
    assert not st.active() and os.listdir(d) == []
    tmpdirs.remove(d)


def test_recover_drops_leftover_temp():
    d = tmpdirs.make("sipling-fw-store")
    st = Store(realfs, d + "/cfg.json")
    _put(st, b"old")
    f = open(d + "/cfg.json.new", "wb")
    f.write(b"half of the ne")
    f.close()
    st2 = Store(realfs, d + "/cfg.json")
    assert st2.recover() == "dropped unfinished %s/cfg.json.new" % d
    assert st2.read() == b"old"
    assert os.listdir(d) == ["cfg.json"]
    assert st2.recover() is None
    tmpdirs.remove(d)


def _cut_run(no_replace, budget=None, ops=None, first=True):
    d = tmpdirs.make("sipling-fw-store")
    path = d + "/cfg.json"
    old = b'{"version": 1, "password": "old"}' * 3
    new = b'{"version": 1, "password": "new-and-longer"}' * 5
    if not first:
        _put(Store(realfs, path), old)
    cfs = CrashFS(budget, ops, no_replace)
    st = Store(cfs, path)
    crashed = False
    try:
        _put(st, new)
    except Crash:
        crashed = True
    # reboot: a fresh store on the real fs (FAT-like rename rule kept)
    boot = Store(CrashFS(no_replace=no_replace), path)
    boot.recover()
    got = boot.read()
    allowed = (new,) if not crashed else ((None, new) if first else (old, new))
    assert got in allowed, (budget, ops, got)
    names = sorted(os.listdir(d))
    assert names in ([], ["cfg.json"]), names
    tmpdirs.remove(d)
    return crashed


def test_power_cut_at_every_written_byte():
    for no_replace in (False, True):
        for first in (True, False):
            b = 0
            while _cut_run(no_replace, budget=b, first=first):
                b += 7
            assert b > 200


def test_power_cut_at_every_rename_and_remove():
    for no_replace in (False, True):
        for first in (True, False):
            ops = 0
            while _cut_run(no_replace, ops=ops, first=first):
                ops += 1
            # FAT-style replace needs rename, rename, remove; littlefs/POSIX one rename
            assert ops == (3 if (no_replace and not first) else 1), ops


def test_sha256_file_blocks():
    d = tmpdirs.make("sipling-fw-store")
    data = bytes(range(256)) * 9
    f = open(d + "/x", "wb")
    f.write(data)
    f.close()
    assert store_mod.sha256_file(realfs, d + "/x") == _sha(data)
    tmpdirs.remove(d)
