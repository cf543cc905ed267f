# `make bench`: ESP cost per 1 KB packet on the MicroPython unix port.
# For each (auth, enc) pair: protect and unprotect in microseconds, the ratio to the bare
# primitive cost of the same bytes in the same run (cryptolib AES-CBC or the fastest 3DES
# here, plus the two hashlib passes of HMAC), and heap bytes allocated per packet
# (gc.mem_alloc with the collector off). Then 3DES-CBC throughput per implementation.
import gc
import os
import time

import cryptolib

from sipling.esp import codec, des3, integ
from sipling.esp import sa as sam

N = 200
SIZE = 1024
AUTHS = ("hmac-md5-96", "hmac-sha-1-96", "hmac-sha-256-128")
ENCS = ("null", "aes-cbc", "des-ede3-cbc")
IK = bytes(range(16))
CK = bytes(range(16, 32))


def _us(fn, n, reps=5):
    # best of reps runs: the least disturbed by other processes on the machine
    best = None
    for _ in range(reps):
        t = time.ticks_us()
        fn(n)
        dt = time.ticks_diff(time.ticks_us(), t) / n
        if best is None or dt < best:
            best = dt
    return best


def _min(a, b):
    return b if a is None or b < a else a


def _alloc(fn, n):
    gc.collect()
    gc.disable()
    a = gc.mem_alloc()
    fn(n)
    b = gc.mem_alloc()
    gc.enable()
    return (b - a) / n


def _pair(alg, ealg):
    tx = sam.SADB(os.urandom).install_3gpp(0x1001, 0x1002, 5062, 5064, 0x2001, 0x2002, 5066, 5068,
                                           alg, ealg, IK, CK)
    rxdb = sam.SADB(os.urandom)
    rx = rxdb.install_3gpp(0x2001, 0x2002, 5066, 5068, 0x1001, 0x1002, 5062, 5064, alg, ealg, IK, CK)
    return tx, rxdb, rx


def _bare(alg, ealg):
    # The primitives alone on the same byte counts: cipher over the padded payload, HMAC
    # (two hash passes, as any HMAC needs) over header + IV + ciphertext.
    hname = integ.ALGS[alg][0]
    import hashlib
    h = getattr(hashlib, hname)
    ipad = bytes(64)
    blk = {"null": 4, "aes-cbc": 16, "des-ede3-cbc": 8}[ealg]
    ivl = {"null": 0, "aes-cbc": 16, "des-ede3-cbc": 8}[ealg]
    ct = (SIZE + 2 + blk - 1) // blk * blk
    buf = bytearray(8 + ivl + ct)
    mv = memoryview(buf)
    region = mv[8 + ivl:]
    iv = bytes(16)
    tdes = des3.TDES(CK + CK[:8]) if ealg == "des-ede3-cbc" else None
    chain = bytearray(8)

    def run(n):
        for _ in range(n):
            if ealg == "aes-cbc":
                cryptolib.aes(CK, 2, iv).encrypt(region, region)
            elif tdes:
                tdes.encrypt(buf, 8 + ivl, ct, chain)
            x = h(ipad)
            x.update(buf)
            y = h(ipad)
            y.update(x.digest())
            y.digest()
    return run


def pairs_table():
    payload = bytes(SIZE)
    print("per %d-byte packet, %d packets; ratio = ESP cost / bare cryptolib+hashlib (+3DES) cost" % (SIZE, N))
    print("%-18s %-13s %9s %9s %9s %7s %7s %9s %9s" % (
        "auth", "enc", "prot_us", "unprot_us", "bare_us", "p_ratio", "u_ratio", "p_heap_B", "u_heap_B"))
    for alg in AUTHS:
        for ealg in ENCS:
            tx, rxdb, rx = _pair(alg, ealg)
            out = tx.out_c

            def prot(n):
                for _ in range(n):
                    codec.protect(out, payload)
            box = [None]

            def unprot(n):
                for p in box[0]:
                    codec.unprotect(rxdb, p)
            bare = _bare(alg, ealg)
            prot(10)
            bare(5)
            p_us = u_us = b_us = None
            for _ in range(7):  # interleaved, best of 7: load on the machine hits all alike
                box[0] = None
                gc.collect()
                box[0] = [bytes(codec.protect(out, payload)) for _ in range(N)]
                gc.collect()
                p_us = _min(p_us, _us(prot, N, 1))
                u_us = _min(u_us, _us(unprot, N, 1))
                b_us = _min(b_us, _us(bare, N, 1))
            p_heap = _alloc(prot, N)
            box[0] = [bytes(codec.protect(out, payload)) for _ in range(N)]
            u_heap = _alloc(unprot, N)
            box[0] = None
            assert sum(rxdb.drops) == 0
            print("%-18s %-13s %9.1f %9.1f %9.1f %7.2f %7.2f %9.1f %9.1f" % (
                alg, ealg, p_us, u_us, b_us, p_us / b_us, u_us / b_us, p_heap, u_heap))


def hmac_floor():
    # What HMAC alone allocates per packet with hashlib (no copy(): 2 hash objects and
    # 2 digests per packet); the ESP heap columns above cannot go below this.
    import hashlib
    buf = bytearray(1060)
    mv = memoryview(buf)
    ipad = bytes(64)
    for name in ("md5", "sha1", "sha256"):
        h = getattr(hashlib, name)

        def run(n):
            for _ in range(n):
                x = h(ipad)
                x.update(mv[0:1048])
                y = h(ipad)
                y.update(x.digest())
                y.digest()
        run(5)
        print("  hashlib HMAC-%s alone: %.1f B per packet" % (name, _alloc(run, N)))


def tdes_table():
    print("3DES-CBC throughput (KB/s) per implementation, 4 KB buffer:")
    buf = bytearray(4096)
    for impl in des3.implementations():
        d = des3.TDES(bytes(range(24)), impl)
        chain = bytearray(8)
        reps = 2 if impl != "viper" else 40
        d.encrypt(buf, 0, 64, chain)
        t = time.ticks_us()
        for _ in range(reps):
            d.encrypt(buf, 0, len(buf), chain)
        dt = time.ticks_diff(time.ticks_us(), t)
        a = _alloc(lambda n: d.encrypt(buf, 0, len(buf), chain), 1)
        print("  %-7s %8.1f KB/s  heap per 4 KB call: %d B" % (impl, reps * 4.0 * 1e6 / dt, a))


pairs_table()
print("heap floor (MicroPython hashlib objects cannot be reset or copied):")
hmac_floor()
tdes_table()
