"""CPython stand-ins for the MicroPython built-ins the firmware cores import.

Only what the firmware uses: ``micropython.const/native/viper`` and
``cryptolib.aes`` (ECB and CBC, with ``encrypt(in, out)`` into a buffer),
backed by the ``cryptography`` package. ``install()`` registers them in
``sys.modules`` unless the real modules exist (it is a no-op on MicroPython).
"""
import sys
import types


def _identity(x):
    return x


class _Aes:
    """cryptolib.aes(key, mode[, iv]): mode 1 = ECB, 2 = CBC; one object per direction."""

    def __init__(self, key, mode, iv=None):
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        key = bytes(key)
        if len(key) not in (16, 32):
            raise ValueError("key")
        if mode == 1:
            m = modes.ECB()
        elif mode == 2:
            if iv is None or len(iv) != 16:
                raise ValueError("iv")
            m = modes.CBC(bytes(iv))
        else:
            raise ValueError("mode")
        self._cipher = Cipher(algorithms.AES(key), m)
        self._enc = None
        self._dec = None

    def _run(self, ctx, data, out):
        if len(data) % 16:
            raise ValueError("blksize")
        res = ctx.update(bytes(data))
        if out is None:
            return res
        out[:len(res)] = res
        return None

    def encrypt(self, data, out=None):
        if self._dec is not None:
            raise OSError("mode")
        if self._enc is None:
            self._enc = self._cipher.encryptor()
        return self._run(self._enc, data, out)

    def decrypt(self, data, out=None):
        if self._enc is not None:
            raise OSError("mode")
        if self._dec is None:
            self._dec = self._cipher.decryptor()
        return self._run(self._dec, data, out)


def install():
    if sys.implementation.name == "micropython":
        return
    if "micropython" not in sys.modules:
        mp = types.ModuleType("micropython")
        mp.const = _identity
        mp.native = _identity
        mp.viper = _identity
        mp.mem_info = lambda *a: None
        sys.modules["micropython"] = mp
    if "cryptolib" not in sys.modules:
        cl = types.ModuleType("cryptolib")
        cl.aes = _Aes
        sys.modules["cryptolib"] = cl
