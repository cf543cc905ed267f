# Known answers for the ESP primitives: HMAC-96/128 truncations, AES-CBC through the
# cryptolib interface, and the hand-written 3DES (every implementation this interpreter has).
from esp_util import records
from util import unhex

from sipling.esp import des3, integ


def _hmac_case(path, alg, icv_len):
    n = 0
    for r in records(path):
        key = unhex(r["key"])
        data = unhex(r["data"])
        want = unhex(r["digest"])
        h = integ.Hmac(alg, key)
        full = h.digest(data)
        assert full[:len(want)] == want, (alg, r["case"])
        out = bytearray(icv_len + 4)
        h.icv_into(data, out, 2)
        assert bytes(out[2:2 + icv_len]) == want[:icv_len]
        assert h.verify(data, out, 2)
        out[2 + icv_len - 1] ^= 1
        assert not h.verify(data, out, 2)
        n += 1
    assert n == 7


def test_hmac_md5_96_rfc2202():
    _hmac_case("esp/hmac_md5_rfc2202.txt", "hmac-md5-96", 12)


def test_hmac_sha1_96_rfc2202():
    _hmac_case("esp/hmac_sha1_rfc2202.txt", "hmac-sha-1-96", 12)


def test_hmac_sha256_128_rfc4231():
    _hmac_case("esp/hmac_sha256_rfc4231.txt", "hmac-sha-256-128", 16)


def test_aes_cbc_rfc3602_through_cryptolib():
    import cryptolib
    n = 0
    for r in records("esp/aes_cbc_rfc3602.txt"):
        key, iv, pt, ct = (unhex(r[k]) for k in ("key", "iv", "plaintext", "ciphertext"))
        buf = bytearray(pt)
        cryptolib.aes(key, 2, iv).encrypt(buf, buf)
        assert bytes(buf) == ct, r["case"]
        cryptolib.aes(key, 2, iv).decrypt(buf, buf)
        assert bytes(buf) == pt
        n += 1
    assert n == 4


def test_tdes_known_answers_every_implementation():
    impls = des3.implementations()
    assert "plain" in impls
    for impl in impls:
        for r in records("esp/tdes.txt"):
            key, iv, pt, ct = (unhex(r[k]) for k in ("key", "iv", "plaintext", "ciphertext"))
            d = des3.TDES(key, impl)
            buf = bytearray(pt)
            if r["mode"] == "ecb":  # ECB = CBC with a zero IV, one block at a time
                for off in range(0, len(buf), 8):
                    d.encrypt(buf, off, 8, bytearray(8))
            else:
                chain = bytearray(iv)
                d.encrypt(buf, 0, len(buf), chain)
                assert bytes(chain) == ct[-8:]
            assert bytes(buf) == ct, (impl, r["case"])
            if r["mode"] == "ecb":
                for off in range(0, len(buf), 8):
                    d.decrypt(buf, off, 8, bytearray(8))
            else:
                d.decrypt(buf, 0, len(buf), bytearray(iv))
            assert bytes(buf) == pt, (impl, r["case"])


def test_tdes_implementations_agree_on_longer_data():
    key = bytes(range(3, 27))
    data = bytes((i * 7 + 1) & 255 for i in range(256))
    outs = []
    for impl in des3.implementations():
        b = bytearray(data)
        des3.TDES(key, impl).encrypt(b, 0, len(b), bytearray(b"\x01" * 8))
        outs.append(bytes(b))
        des3.TDES(key, impl).decrypt(b, 0, len(b), bytearray(b"\x01" * 8))
        assert bytes(b) == data
    for o in outs:
        assert o == outs[0]
    assert outs[0] != data


def test_tdes_rejects_wrong_key_length():
    from util import raises
    raises(ValueError, des3.TDES, bytes(16))
