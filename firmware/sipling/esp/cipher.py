# ESP encryption algorithms (all CBC with an explicit per-packet IV in the payload):
#   null          RFC 2410  (block 4: payload + trailer aligned to 32 bits, RFC 4303 2.4)
#   aes-cbc       RFC 3602  (AES-128, 16-byte IV)
#   des-ede3-cbc  RFC 2451  (3DES EDE, 24-byte key, 8-byte IV)
# IVs must be unpredictable (RFC 3602 section 2.4). Each SA encrypts a packet counter with
# AES-ECB under a random key of its own (NIST SP 800-38A appendix C), so no RNG call is
# needed per packet; the random key comes from the shell's RNG when the SA is made.
import cryptolib
from micropython import const

from . import des3

_AES_ECB = const(1)
_AES_CBC = const(2)

ENCS = ("null", "aes-cbc", "des-ede3-cbc")


class NullCipher:
    name = "null"
    block = 4
    iv_len = 0

    def next_iv(self, out, off):
        pass

    def encrypt(self, mv, off, n, iv_off):
        pass

    def decrypt(self, src, soff, dst, n, iv_off):
        # Plaintext already: copy it to the SA's receive buffer.
        dst[0:n] = src[soff:soff + n]


class _IvGen:
    # Unpredictable IVs: AES-ECB(random key, counter), SP 800-38A appendix C.
    def __init__(self, seed):
        self._ecb = cryptolib.aes(bytes(seed), _AES_ECB)
        self._ctr = bytearray(16)
        self._out = bytearray(16)

    def next(self, out, off, n):
        c = self._ctr
        i = 15
        while i >= 0:
            c[i] = (c[i] + 1) & 255
            if c[i]:
                break
            i -= 1
        self._ecb.encrypt(c, self._out)
        o = self._out
        for j in range(n):
            out[off + j] = o[j]


class AesCbc:
    name = "aes-cbc"
    block = 16
    iv_len = 16

    def __init__(self, key, seed):
        if len(key) != 16:
            raise ValueError("aes-cbc key must be 16 bytes")
        self._key = bytes(key)
        self._iv = _IvGen(seed)

    def next_iv(self, out, off):
        self._iv.next(out, off, 16)

    def encrypt(self, mv, off, n, iv_off):
        # mv: memoryview of the SA buffer; IV at mv[iv_off:iv_off+16], data at mv[off:off+n].
        region = mv[off:off + n]
        cryptolib.aes(self._key, _AES_CBC, mv[iv_off:iv_off + 16]).encrypt(region, region)

    def decrypt(self, src, soff, dst, n, iv_off):
        # src: received packet (IV at src[iv_off:]); plaintext to dst[0:n].
        cryptolib.aes(self._key, _AES_CBC, src[iv_off:iv_off + 16]).decrypt(src[soff:soff + n], dst[0:n])


class TdesCbc:
    name = "des-ede3-cbc"
    block = 8
    iv_len = 8

    def __init__(self, key, seed, impl=None):
        if len(key) != 24:
            raise ValueError("des-ede3-cbc key must be 24 bytes")
        self._des = des3.TDES(key, impl)
        self._iv = _IvGen(seed)
        self._chain = bytearray(8)

    def next_iv(self, out, off):
        self._iv.next(out, off, 8)

    def encrypt(self, mv, off, n, iv_off):
        c = self._chain
        for i in range(8):
            c[i] = mv[iv_off + i]
        self._des.encrypt(mv, off, n, c)

    def decrypt(self, src, soff, dst, n, iv_off):
        c = self._chain
        for i in range(8):
            c[i] = src[iv_off + i]
        dst[0:n] = src[soff:soff + n]
        self._des.decrypt(dst, 0, n, c)


def make(enc, key, seed):
    if enc == "null":
        return NullCipher()
    if enc == "aes-cbc":
        return AesCbc(key, seed)
    if enc == "des-ede3-cbc":
        return TdesCbc(key, seed)
    raise ValueError("unknown encryption algorithm")
