# MicroPython-only viper fast paths (word sum for the UDP checksum, constant-time compare):
# no allocation, machine words. Import fails on CPython and on ports without the viper
# emitter; callers then keep their plain code.
import micropython


@micropython.viper
def sum16(seg, n: int) -> int:
    # RFC 1071 sum of big-endian 16-bit words of seg[0:n], modulo 0xFFFF (udp.py).
    p = ptr8(seg)
    s = 0
    i = 0
    m = n - 1
    while i < m:
        s += (p[i] << 8) | p[i + 1]
        if s > 0x3FFFFFF:  # fold early: stays a small int on 32-bit ports
            s = (s & 0xFFFF) + (s >> 16)
        i += 2
    if n & 1:
        s += p[n - 1] << 8
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s % 0xFFFF


@micropython.viper
def ct_eq(a, b, boff: int, n: int) -> bool:
    # a[0:n] == b[boff:boff+n] without an early exit (constant time, RFC 4303 3.4.4).
    pa = ptr8(a)
    pb = ptr8(b)
    acc = 0
    i = 0
    while i < n:
        acc |= pa[i] ^ pb[boff + i]
        i += 1
    return acc == 0
