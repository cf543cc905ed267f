# MicroPython-only 3DES-CBC variants (same tables and key schedule as des3.py):
#   native: the plain algorithm (des3.cbc_plain) compiled with @micropython.native
#   viper:  machine-word arithmetic on ptr8/ptr32 views; no heap use, no big ints on
#           32-bit ports (the plain code's 32-bit values are big ints on ESP32).
# Importing this module fails on CPython (no ptr32/uint) and on ports without the
# emitters; des3.py then keeps the plain implementation.
import micropython

_SP = _IPH = _IPL = _FPH = _FPL = None


@micropython.viper
def _cbc_viper(buf, ks, iv, ctx):
    c = ptr32(ctx)
    off = int(c[0])
    end = off + int(c[1])
    enc = int(c[2])
    p = ptr8(buf)
    k = ptr32(ks)
    v = ptr8(iv)
    sp = ptr32(_SP)
    ih = ptr32(_IPH)
    il = ptr32(_IPL)
    fh = ptr32(_FPH)
    fl = ptr32(_FPL)
    m = uint(0xFFFF) | (uint(0xFFFF) << 16)
    ca = (uint(v[0]) << 24) | (uint(v[1]) << 16) | (uint(v[2]) << 8) | uint(v[3])
    cb = (uint(v[4]) << 24) | (uint(v[5]) << 16) | (uint(v[6]) << 8) | uint(v[7])
    while off < end:
        a = (uint(p[off]) << 24) | (uint(p[off + 1]) << 16) | (uint(p[off + 2]) << 8) | uint(p[off + 3])
        b = (uint(p[off + 4]) << 24) | (uint(p[off + 5]) << 16) | (uint(p[off + 6]) << 8) | uint(p[off + 7])
        x = a
        y = b
        if enc:
            x ^= ca
            y ^= cb
        # initial permutation (nibble tables)
        l = uint(0)
        r = uint(0)
        nn = 0
        while nn < 8:
            t = int((x >> uint(28 - 4 * nn)) & 15) + nn * 16
            l |= uint(ih[t])
            r |= uint(il[t])
            t = int((y >> uint(28 - 4 * nn)) & 15) + nn * 16 + 128
            l |= uint(ih[t])
            r |= uint(il[t])
            nn += 1
        i = 0
        while i < 96:
            e = i + 32
            while i < e:
                w = (((r >> 3) | (r << 29)) & m) ^ uint(k[i])
                f = uint(sp[int((w >> 24) & 63)]) | uint(sp[128 + int((w >> 16) & 63)]) | uint(sp[256 + int((w >> 8) & 63)]) | uint(sp[384 + int(w & 63)])
                w = (((r >> 7) | (r << 25)) & m) ^ uint(k[i + 1])
                l ^= f | uint(sp[64 + int((w >> 16) & 63)]) | uint(sp[192 + int((w >> 8) & 63)]) | uint(sp[320 + int(w & 63)]) | uint(sp[448 + int((w >> 24) & 63)])
                w = (((l >> 3) | (l << 29)) & m) ^ uint(k[i + 2])
                f = uint(sp[int((w >> 24) & 63)]) | uint(sp[128 + int((w >> 16) & 63)]) | uint(sp[256 + int((w >> 8) & 63)]) | uint(sp[384 + int(w & 63)])
                w = (((l >> 7) | (l << 25)) & m) ^ uint(k[i + 3])
                r ^= f | uint(sp[64 + int((w >> 16) & 63)]) | uint(sp[192 + int((w >> 8) & 63)]) | uint(sp[320 + int(w & 63)]) | uint(sp[448 + int((w >> 24) & 63)])
                i += 4
            t2 = l
            l = r
            r = t2
        # final permutation
        x = uint(0)
        y = uint(0)
        nn = 0
        while nn < 8:
            t = int((l >> uint(28 - 4 * nn)) & 15) + nn * 16
            x |= uint(fh[t])
            y |= uint(fl[t])
            t = int((r >> uint(28 - 4 * nn)) & 15) + nn * 16 + 128
            x |= uint(fh[t])
            y |= uint(fl[t])
            nn += 1
        if enc:
            ca = x
            cb = y
        else:
            x ^= ca
            y ^= cb
            ca = a
            cb = b
        p[off] = x >> 24
        p[off + 1] = x >> 16
        p[off + 2] = x >> 8
        p[off + 3] = x
        p[off + 4] = y >> 24
        p[off + 5] = y >> 16
        p[off + 6] = y >> 8
        p[off + 7] = y
        off += 8
    v[0] = ca >> 24
    v[1] = ca >> 16
    v[2] = ca >> 8
    v[3] = ca
    v[4] = cb >> 24
    v[5] = cb >> 16
    v[6] = cb >> 8
    v[7] = cb


@micropython.native
def _cbc_native(buf, off, n, ks, iv, encrypt):
    # des3.cbc_plain compiled by the native emitter (keep the two identical).
    sp = _SP
    iph = _IPH
    ipl = _IPL
    fph = _FPH
    fpl = _FPL
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


class _ViperCall:
    # Adapts the viper function (4 object args) to the common (buf, off, n, ks, iv, enc) call.
    def __init__(self):
        from array import array
        self.ctx = array("i", (0, 0, 0))

    def __call__(self, buf, off, n, ks, iv, encrypt):
        c = self.ctx
        c[0] = off
        c[1] = n
        c[2] = 1 if encrypt else 0
        _cbc_viper(buf, ks, iv, c)


def register(impls, tables):
    global _SP, _IPH, _IPL, _FPH, _FPL
    _SP, _IPH, _IPL, _FPH, _FPL = tables()
    impls["native"] = _cbc_native
    impls["viper"] = _ViperCall()
