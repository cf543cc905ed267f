# Shared helpers for the ESP firmware tests (both interpreters).
from util import unhex, vector


def records(relpath):
    """Blank-line-separated `name = hexvalue` records of a tests/vectors file."""
    out = []
    cur = {}
    for line in vector(relpath).decode().split("\n"):
        line = line.strip()
        if line.startswith("#"):
            continue
        if not line:
            if cur:
                out.append(cur)
                cur = {}
            continue
        k, _, v = line.partition(" = ")
        cur[k] = v
    if cur:
        out.append(cur)
    return out


class Rng:
    """Deterministic stand-in for os.urandom in cores (tests only)."""

    def __init__(self, seed=1):
        self.x = seed

    def __call__(self, n):
        out = bytearray(n)
        for i in range(n):
            self.x = (self.x * 1103515245 + 12345) & 0x7FFFFFFF
            out[i] = (self.x >> 16) & 255
        return bytes(out)


AUTHS = ("hmac-md5-96", "hmac-sha-1-96", "hmac-sha-256-128")
ENCS = ("null", "aes-cbc", "des-ede3-cbc")
IK = unhex("00112233445566778899aabbccddeeff")
CK = unhex("0f1e2d3c4b5a69788796a5b4c3d2e1f0")


def pair_dbs(alg, ealg, mtu=1500):
    """A UE SADB and a proxy SADB holding the two halves of one ipsec-3gpp pair."""
    from sipling.esp import sa as sam
    ue = sam.SADB(Rng(1), mtu)
    px = sam.SADB(Rng(2), mtu)
    p_ue = ue.install_3gpp(0x1001, 0x1002, 5062, 5064, 0x2001, 0x2002, 5066, 5068,
                           alg, ealg, IK, CK)
    p_px = px.install_3gpp(0x2001, 0x2002, 5066, 5068, 0x1001, 0x1002, 5062, 5064,
                           alg, ealg, IK, CK)
    return ue, p_ue, px, p_px
