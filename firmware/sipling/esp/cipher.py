# ESP encryption algorithms (all CBC with an explicit per-packet IV in the payload):
#   null          RFC 2410  (block 4: payload + trailer aligned to 32 bits, RFC 4303 2.4)
#   aes-cbc       RFC 3602  (AES-128, 16-byte IV)
#   des-ede3-cbc  RFC 2451  (3DES EDE, 24-byte key, 8-byte IV)
#
# IVs must be unpredictable (RFC 3602 section 2.4). Each outbound SA keeps ONE CBC
# context for its whole life, started from a random value. Per packet it encrypts a
# counter block through that context and sends the result as the IV; the payload then
# continues the same chain, so it is CBC under exactly that IV. The IV is the block
# cipher under the SA key applied to a never-repeating input that includes the previous
# (unknown until sent) ciphertext block: NIST SP 800-38A appendix C, first method. Inbound
# SAs also keep one context: the packet's IV block is fed first so the chain restarts
# from it, and the payload follows. No cipher objects are made per packet.
import cryptolib
from micropython import const


_AES_CBC = const(2)

ENCS = ("null", "aes-cbc", "des-ede3-cbc")


def _bump(ctr):
    i = len(ctr) - 1
    while i >= 0:
        ctr[i] = (ctr[i] + 1) & 255
        if ctr[i]:
            return
        i -= 1


class NullCipher:
    name = "null"
    block = 4
    iv_len = 0

    def encrypt(self, buf, mv, iv_off, n):
        pass

    def decrypt(self, src, iv_off, n, dst):
        dst[0:n] = src[iv_off:iv_off + n]
        return 0


class AesCbc:
    name = "aes-cbc"
    block = 16
    iv_len = 16

    def __init__(self, key, seed):
        if len(key) != 16:
            raise ValueError("aes-cbc key must be 16 bytes")
        self._enc = cryptolib.aes(bytes(key), _AES_CBC, bytes(seed[:16]))
        self._dec = cryptolib.aes(bytes(key), _AES_CBC, bytes(16))
        self._ctr = bytearray(16)

    def encrypt(self, buf, mv, iv_off, n):
        """IV at buf[iv_off:iv_off+16], then n bytes encrypted in place after it."""
        c = self._ctr
        _bump(c)
        buf[iv_off:iv_off + 16] = c
        region = mv[iv_off:iv_off + 16 + n]
        self._enc.encrypt(region, region)

    def decrypt(self, src, iv_off, n, dst):
        """Decrypt src[iv_off+16 : iv_off+16+n] (IV before it); plaintext lands in
        dst[16:16+n]; returns 16, the plaintext offset."""
        self._dec.decrypt(src[iv_off:iv_off + 16 + n], dst)
        return 16


class TdesCbc:
    name = "des-ede3-cbc"
    block = 8
    iv_len = 8

    def __init__(self, key, seed, impl=None):
        if len(key) != 24:
            raise ValueError("des-ede3-cbc key must be 24 bytes")
        # imported here: the 3DES tables cost heap, paid only when des-ede3-cbc is agreed
        from . import des3
        self._des = des3.TDES(key, impl)
        self._chain = bytearray(seed[:8])
        self._rchain = bytearray(8)
        self._ctr = bytearray(8)

    def encrypt(self, buf, mv, iv_off, n):
        c = self._ctr
        _bump(c)
        buf[iv_off:iv_off + 8] = c
        self._des.encrypt(buf, iv_off, 8 + n, self._chain)

    def decrypt(self, src, iv_off, n, dst):
        dst[0:8 + n] = src[iv_off:iv_off + 8 + n]
        self._des.decrypt(dst, 0, 8 + n, self._rchain)
        return 8


def make(enc, key, seed):
    if enc == "null":
        return NullCipher()
    if enc == "aes-cbc":
        return AesCbc(key, seed)
    if enc == "des-ede3-cbc":
        return TdesCbc(key, seed)
    raise ValueError("unknown encryption algorithm")
