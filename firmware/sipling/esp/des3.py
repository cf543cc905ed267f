# 3DES (TDEA, EDE, keying option 1) in CBC mode for ESP des-ede3-cbc (RFC 2451).
# cryptolib on the board has AES only, so DES is written here (FIPS 46-3, NIST SP 800-67).
#
# Table-driven: the S-box and P permutation of each of the 8 round-function boxes are
# folded into one 64-entry "SP" table, the initial/final permutations are nibble tables,
# and the E expansion is two rotations of R (so the 48-bit subkey is stored as two
# 32-bit words lined up with those rotations). IP/FP run once per 3DES block: the FP of
# one DES stage and the IP of the next cancel (SP 800-67 section 3.1).
#
# Three implementations share the tables and key schedule: plain Python (runs anywhere,
# CPython included), and in des3_fast.py @micropython.native and @micropython.viper
# variants (only on MicroPython; loaded if the port can compile them). Tables are built
# on first use, not at import.
from array import array

# FIPS 46-3 tables, 1-based bit numbers (bit 1 = most significant).
_IP = (58, 50, 42, 34, 26, 18, 10, 2, 60, 52, 44, 36, 28, 20, 12, 4,
       62, 54, 46, 38, 30, 22, 14, 6, 64, 56, 48, 40, 32, 24, 16, 8,
       57, 49, 41, 33, 25, 17, 9, 1, 59, 51, 43, 35, 27, 19, 11, 3,
       61, 53, 45, 37, 29, 21, 13, 5, 63, 55, 47, 39, 31, 23, 15, 7)
_P = (16, 7, 20, 21, 29, 12, 28, 17, 1, 15, 23, 26, 5, 18, 31, 10,
      2, 8, 24, 14, 32, 27, 3, 9, 19, 13, 30, 6, 22, 11, 4, 25)
_PC1 = (57, 49, 41, 33, 25, 17, 9, 1, 58, 50, 42, 34, 26, 18,
        10, 2, 59, 51, 43, 35, 27, 19, 11, 3, 60, 52, 44, 36,
        63, 55, 47, 39, 31, 23, 15, 7, 62, 54, 46, 38, 30, 22,
        14, 6, 61, 53, 45, 37, 29, 21, 13, 5, 28, 20, 12, 4)
_PC2 = (14, 17, 11, 24, 1, 5, 3, 28, 15, 6, 21, 10,
        23, 19, 12, 4, 26, 8, 16, 7, 27, 20, 13, 2,
        41, 52, 31, 37, 47, 55, 30, 40, 51, 45, 33, 48,
        44, 49, 39, 56, 34, 53, 46, 42, 50, 36, 29, 32)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
# S-boxes S1..S8, each 4 rows of 16 (row = outer bits, column = inner 4 bits).
_S = (
    b"\x0e\x04\x0d\x01\x02\x0f\x0b\x08\x03\x0a\x06\x0c\x05\x09\x00\x07"
    b"\x00\x0f\x07\x04\x0e\x02\x0d\x01\x0a\x06\x0c\x0b\x09\x05\x03\x08"
    b"\x04\x01\x0e\x08\x0d\x06\x02\x0b\x0f\x0c\x09\x07\x03\x0a\x05\x00"
    b"\x0f\x0c\x08\x02\x04\x09\x01\x07\x05\x0b\x03\x0e\x0a\x00\x06\x0d",
    b"\x0f\x01\x08\x0e\x06\x0b\x03\x04\x09\x07\x02\x0d\x0c\x00\x05\x0a"
    b"\x03\x0d\x04\x07\x0f\x02\x08\x0e\x0c\x00\x01\x0a\x06\x09\x0b\x05"
    b"\x00\x0e\x07\x0b\x0a\x04\x0d\x01\x05\x08\x0c\x06\x09\x03\x02\x0f"
    b"\x0d\x08\x0a\x01\x03\x0f\x04\x02\x0b\x06\x07\x0c\x00\x05\x0e\x09",
    b"\x0a\x00\x09\x0e\x06\x03\x0f\x05\x01\x0d\x0c\x07\x0b\x04\x02\x08"
    b"\x0d\x07\x00\x09\x03\x04\x06\x0a\x02\x08\x05\x0e\x0c\x0b\x0f\x01"
    b"\x0d\x06\x04\x09\x08\x0f\x03\x00\x0b\x01\x02\x0c\x05\x0a\x0e\x07"
    b"\x01\x0a\x0d\x00\x06\x09\x08\x07\x04\x0f\x0e\x03\x0b\x05\x02\x0c",
    b"\x07\x0d\x0e\x03\x00\x06\x09\x0a\x01\x02\x08\x05\x0b\x0c\x04\x0f"
    b"\x0d\x08\x0b\x05\x06\x0f\x00\x03\x04\x07\x02\x0c\x01\x0a\x0e\x09"
    b"\x0a\x06\x09\x00\x0c\x0b\x07\x0d\x0f\x01\x03\x0e\x05\x02\x08\x04"
    b"\x03\x0f\x00\x06\x0a\x01\x0d\x08\x09\x04\x05\x0b\x0c\x07\x02\x0e",
    b"\x02\x0c\x04\x01\x07\x0a\x0b\x06\x08\x05\x03\x0f\x0d\x00\x0e\x09"
    b"\x0e\x0b\x02\x0c\x04\x07\x0d\x01\x05\x00\x0f\x0a\x03\x09\x08\x06"
    b"\x04\x02\x01\x0b\x0a\x0d\x07\x08\x0f\x09\x0c\x05\x06\x03\x00\x0e"
    b"\x0b\x08\x0c\x07\x01\x0e\x02\x0d\x06\x0f\x00\x09\x0a\x04\x05\x03",
    b"\x0c\x01\x0a\x0f\x09\x02\x06\x08\x00\x0d\x03\x04\x0e\x07\x05\x0b"
    b"\x0a\x0f\x04\x02\x07\x0c\x09\x05\x06\x01\x0d\x0e\x00\x0b\x03\x08"
    b"\x09\x0e\x0f\x05\x02\x08\x0c\x03\x07\x00\x04\x0a\x01\x0d\x0b\x06"
    b"\x04\x03\x02\x0c\x09\x05\x0f\x0a\x0b\x0e\x01\x07\x06\x00\x08\x0d",
    b"\x04\x0b\x02\x0e\x0f\x00\x08\x0d\x03\x0c\x09\x07\x05\x0a\x06\x01"
    b"\x0d\x00\x0b\x07\x04\x09\x01\x0a\x0e\x03\x05\x0c\x02\x0f\x08\x06"
    b"\x01\x04\x0b\x0d\x0c\x03\x07\x0e\x0a\x0f\x06\x08\x00\x05\x09\x02"
    b"\x06\x0b\x0d\x08\x01\x04\x0a\x07\x09\x05\x00\x0f\x0e\x02\x03\x0c",
    b"\x0d\x02\x08\x04\x06\x0f\x0b\x01\x0a\x09\x03\x0e\x05\x00\x0c\x07"
    b"\x01\x0f\x0d\x08\x0a\x03\x07\x04\x0c\x05\x06\x0b\x00\x0e\x09\x02"
    b"\x07\x0b\x04\x01\x09\x0c\x0e\x02\x00\x06\x0a\x0d\x0f\x03\x05\x08"
    b"\x02\x01\x0e\x07\x04\x0a\x08\x0d\x0f\x0c\x09\x00\x03\x05\x06\x0b",
)

# Built by _tables() on first use: SP (8*64), IP nibble tables (L, R: 16*16 each), FP likewise.
_T = []


def _perm_nibble_tables(perm):
    # out bit o (0-based from MSB of 64) = in bit perm[o]-1. Table index = nibble*16 + value.
    hi = array("I", bytes(4 * 256))
    lo = array("I", bytes(4 * 256))
    for o in range(64):
        src = perm[o] - 1
        nib = src >> 2
        bit = 3 - (src & 3)
        for v in range(16):
            if (v >> bit) & 1:
                if o < 32:
                    hi[nib * 16 + v] |= 1 << (31 - o)
                else:
                    lo[nib * 16 + v] |= 1 << (63 - o)
    return hi, lo


def _tables():
    if _T:
        return _T
    sp = array("I", bytes(4 * 512))
    # Position in the 32-bit f output of S-box j's output bit k (1-based 4j+k+1), after P.
    pinv = [0] * 33
    for o in range(32):
        pinv[_P[o]] = o
    for j in range(8):
        sb = _S[j]
        for x in range(64):
            row = ((x >> 4) & 2) | (x & 1)
            col = (x >> 1) & 15
            s = sb[row * 16 + col]
            v = 0
            for k in range(4):
                if (s >> (3 - k)) & 1:
                    v |= 1 << (31 - pinv[4 * j + k + 1])
            sp[j * 64 + x] = v
    fp = [0] * 64
    for o in range(64):
        fp[_IP[o] - 1] = o + 1
    iph, ipl = _perm_nibble_tables(_IP)
    fph, fpl = _perm_nibble_tables(fp)
    _T.extend((sp, iph, ipl, fph, fpl))
    return _T


def _subkeys(key8):
    # FIPS 46-3 key schedule -> 16 (k_even, k_odd) word pairs lined up with the E rotations.
    bits = 0
    for b in key8:
        bits = (bits << 8) | b
    cd = 0
    for p in _PC1:
        cd = (cd << 1) | ((bits >> (64 - p)) & 1)
    c = cd >> 28
    d = cd & 0xFFFFFFF
    out = []
    for sh in _SHIFTS:
        c = ((c << sh) | (c >> (28 - sh))) & 0xFFFFFFF
        d = ((d << sh) | (d >> (28 - sh))) & 0xFFFFFFF
        both = (c << 28) | d
        k = 0
        for p in _PC2:
            k = (k << 1) | ((both >> (56 - p)) & 1)
        ch = [(k >> (42 - 6 * j)) & 63 for j in range(8)]
        # E chunk j of R is rotr(R, 27-4j) & 63: even chunks come from rotr(R, 3) at shifts
        # 24,16,8,0 and odd ones from rotr(R, 7) at shifts 16,8,0,24.
        out.append((ch[0] << 24) | (ch[2] << 16) | (ch[4] << 8) | ch[6])
        out.append((ch[1] << 16) | (ch[3] << 8) | ch[5] | (ch[7] << 24))
    return out


def _rev(ks):
    # Decryption uses the round keys in reverse order (pairs kept together).
    out = []
    for i in range(30, -2, -2):
        out.append(ks[i])
        out.append(ks[i + 1])
    return out


def schedule(key24):
    """(enc, dec) arrays of 96 round-key words for EDE with K1||K2||K3 (24 bytes)."""
    if len(key24) != 24:
        raise ValueError("3des key must be 24 bytes")
    k1 = _subkeys(key24[0:8])
    k2 = _subkeys(key24[8:16])
    k3 = _subkeys(key24[16:24])
    enc = array("I", k1 + _rev(k2) + k3)
    dec = array("I", _rev(k3) + k2 + _rev(k1))
    return enc, dec


def cbc_plain(buf, off, n, ks, iv, encrypt):
    """CBC over buf[off:off+n] in place (n a multiple of 8); iv is a bytearray(8) updated.
    One loop, no helper calls or tuples per block (they would be garbage per block)."""
    sp, iph, ipl, fph, fpl = _tables()
    ca = (iv[0] << 24) | (iv[1] << 16) | (iv[2] << 8) | iv[3]
    cb = (iv[4] << 24) | (iv[5] << 16) | (iv[6] << 8) | iv[7]
    end = off + n
    while off < end:
        a = (buf[off] << 24) | (buf[off + 1] << 16) | (buf[off + 2] << 8) | buf[off + 3]
        b = (buf[off + 4] << 24) | (buf[off + 5] << 16) | (buf[off + 6] << 8) | buf[off + 7]
        x = a
        y = b
        if encrypt:
            x ^= ca
            y ^= cb
        l = r = 0
        k = 0
        sh = 28
        while k < 128:  # initial permutation, one nibble of each word per step
            v = k + ((x >> sh) & 15)
            l |= iph[v]
            r |= ipl[v]
            v = 128 + k + ((y >> sh) & 15)
            l |= iph[v]
            r |= ipl[v]
            k += 16
            sh -= 4
        i = 0
        while i < 96:
            e = i + 32
            while i < e:
                w = (((r >> 3) | (r << 29)) & 0xFFFFFFFF) ^ ks[i]
                f = sp[(w >> 24) & 63] | sp[128 + ((w >> 16) & 63)] | sp[256 + ((w >> 8) & 63)] | sp[384 + (w & 63)]
                w = (((r >> 7) | (r << 25)) & 0xFFFFFFFF) ^ ks[i + 1]
                l ^= f | sp[64 + ((w >> 16) & 63)] | sp[192 + ((w >> 8) & 63)] | sp[320 + (w & 63)] | sp[448 + ((w >> 24) & 63)]
                w = (((l >> 3) | (l << 29)) & 0xFFFFFFFF) ^ ks[i + 2]
                f = sp[(w >> 24) & 63] | sp[128 + ((w >> 16) & 63)] | sp[256 + ((w >> 8) & 63)] | sp[384 + (w & 63)]
                w = (((l >> 7) | (l << 25)) & 0xFFFFFFFF) ^ ks[i + 3]
                r ^= f | sp[64 + ((w >> 16) & 63)] | sp[192 + ((w >> 8) & 63)] | sp[320 + (w & 63)] | sp[448 + ((w >> 24) & 63)]
                i += 4
            t = l  # end of a DES stage: swap halves (its FP and the next IP cancel)
            l = r
            r = t
        x = y = 0
        k = 0
        sh = 28
        while k < 128:  # final permutation
            v = k + ((l >> sh) & 15)
            x |= fph[v]
            y |= fpl[v]
            v = 128 + k + ((r >> sh) & 15)
            x |= fph[v]
            y |= fpl[v]
            k += 16
            sh -= 4
        if encrypt:
            ca = x
            cb = y
        else:
            x ^= ca
            y ^= cb
            ca = a
            cb = b
        buf[off] = x >> 24
        buf[off + 1] = (x >> 16) & 255
        buf[off + 2] = (x >> 8) & 255
        buf[off + 3] = x & 255
        buf[off + 4] = y >> 24
        buf[off + 5] = (y >> 16) & 255
        buf[off + 6] = (y >> 8) & 255
        buf[off + 7] = y & 255
        off += 8
    for i in range(4):
        iv[i] = (ca >> (24 - 8 * i)) & 255
        iv[4 + i] = (cb >> (24 - 8 * i)) & 255


_IMPLS = {"plain": cbc_plain}


def _load_fast():
    import sys
    if sys.implementation.name != "micropython":
        return  # the CPython shim's native/viper are no-ops and ptr32/uint do not exist
    try:
        from . import des3_fast
    except Exception:  # CPython, or a port whose emitter cannot compile them
        return
    des3_fast.register(_IMPLS, _tables)


def implementations():
    """Names of the CBC implementations this interpreter can run, fastest last."""
    if len(_IMPLS) == 1:
        _load_fast()
    return [n for n in ("plain", "native", "viper") if n in _IMPLS]


class TDES:
    """3DES-CBC for one SA: key K1||K2||K3 (24 bytes). crypt() works in place."""

    def __init__(self, key24, impl=None):
        self.enc, self.dec = schedule(bytes(key24))
        names = implementations()
        self.impl = impl or names[-1]
        self._fn = _IMPLS[self.impl]
        _tables()

    def encrypt(self, buf, off, n, iv):
        self._fn(buf, off, n, self.enc, iv, True)

    def decrypt(self, buf, off, n, iv):
        self._fn(buf, off, n, self.dec, iv, False)
