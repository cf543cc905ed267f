# ESP integrity algorithms: HMAC (RFC 2104) truncated to the ICV length.
#   hmac-md5-96      RFC 2403  (MD5, 12-byte ICV)
#   hmac-sha-1-96    RFC 2404  (SHA-1, 12-byte ICV)
#   hmac-sha-256-128 RFC 4868  (SHA-256, 16-byte ICV)
# Built on hashlib alone: the board has no hmac module and its hash objects have no copy(),
# so the padded inner/outer keys are computed once per SA and each packet starts two fresh
# hash objects from them. ICVs are compared in constant time (RFC 4303 section 3.4.4).
import hashlib
from micropython import const

_BLOCK = const(64)  # MD5, SHA-1 and SHA-256 all use 64-byte blocks

# name -> (hash constructor name, ICV length)
ALGS = {
    "hmac-md5-96": ("md5", 12),
    "hmac-sha-1-96": ("sha1", 12),
    "hmac-sha-256-128": ("sha256", 16),
}


class Hmac:
    """Keyed integrity for one SA. icv_into() and verify() take buffer slices."""

    def __init__(self, alg, key):
        if alg not in ALGS:
            raise ValueError("unknown integrity algorithm")
        hname, self.icv_len = ALGS[alg]
        self.name = alg
        self._h = getattr(hashlib, hname)
        key = bytes(key)
        if len(key) > _BLOCK:  # RFC 2104 section 2: long keys are hashed first
            key = self._h(key).digest()
        ipad = bytearray(_BLOCK)
        opad = bytearray(_BLOCK)
        for i in range(_BLOCK):
            k = key[i] if i < len(key) else 0
            ipad[i] = k ^ 0x36
            opad[i] = k ^ 0x5C
        self._ipad = bytes(ipad)
        self._opad = bytes(opad)

    def digest(self, data):
        """Full HMAC of data (for tests and key-answer checks)."""
        h = self._h(self._ipad)
        h.update(data)
        o = self._h(self._opad)
        o.update(h.digest())
        return o.digest()

    def icv_into(self, data, out, off):
        """Write the truncated ICV of data into out[off:off+icv_len] (bytes after the ICV,
        up to the full digest length, may be overwritten when out has room)."""
        d = self.digest(data)
        n = len(d)
        if off + n <= len(out):
            out[off:off + n] = d  # same length: a copy in C, no resize
        else:
            for i in range(self.icv_len):
                out[off + i] = d[i]

    def verify(self, data, icv, off):
        """True if icv[off:off+icv_len] is the ICV of data; constant time in the ICV bytes."""
        if _ct_eq is None:
            _pick()
        return _ct_eq(self.digest(data), icv, off, self.icv_len)


class NullAuth:
    """ESP with no integrity (RFC 4303 allows it with encryption; tests use it)."""
    icv_len = 0
    name = "null"

    def icv_into(self, data, out, off):
        pass

    def verify(self, data, icv, off):
        return True


def _ct_eq_plain(a, b, boff, n):
    acc = 0
    for i in range(n):
        acc |= a[i] ^ b[boff + i]
    return acc == 0


_ct_eq = None


def _pick():
    # the viper ct_eq where this port can run it (no allocation), else the plain loop
    global _ct_eq
    from sipling.esp.viper_pick import pick
    _ct_eq = pick("ct_eq", _ct_eq_plain)


def make(alg, key):
    if alg == "null":
        return NullAuth()
    return Hmac(alg, key)
