# Shared helpers for the sec-agree firmware tests (CPython and MicroPython).
from util import vector


def lines_of(relpath, name=b"Security-Server"):
    """Values of every `name:` header line of a vector file, as stored (bytes)."""
    out = []
    want = name.lower() + b":"
    for ln in vector(relpath).split(b"\r\n"):
        if ln.lower().startswith(want):
            out.append(ln[len(want):].lstrip(b" \t"))
    return out


def hdrs_of(relpath):
    """Every header line of a vector file as (name, value) pairs."""
    out = []
    for ln in vector(relpath).split(b"\r\n"):
        if b":" in ln:
            n, _, v = ln.partition(b":")
            out.append((n, v.lstrip(b" \t")))
    return out


def kat(section):
    """dict of one [section] of secagree/dver_kat.txt; repeated keys become lists."""
    d = {}
    cur = None
    for ln in vector("secagree/dver_kat.txt").split(b"\n"):
        ln = ln.rstrip(b"\r")
        if not ln or ln.startswith(b"#"):
            continue
        if ln.startswith(b"["):
            cur = ln[1:-1].decode()
            continue
        if cur != section:
            continue
        k, _, v = ln.partition(b"=")
        k = k.decode()
        v = v.replace(b"\\t", b"\t")
        if k in d:
            if not isinstance(d[k], list):
                d[k] = [d[k]]
            d[k].append(v)
        else:
            d[k] = v
    return d


class SeqRand:
    """Deterministic rand(n): bytes from a counter, so SPIs differ on every draw."""

    def __init__(self, seed=1):
        self.n = seed

    def __call__(self, n):
        out = []
        for _ in range(n):
            self.n = (self.n * 1103515245 + 12345) & 0x7FFFFFFF
            out.append((self.n >> 16) & 0xFF)
        return bytes(out)
