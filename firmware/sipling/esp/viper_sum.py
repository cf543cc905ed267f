# MicroPython-only: RFC 1071 16-bit word sum for the inner UDP checksum (udp.py), without
# allocating. Import fails on CPython and on ports without the viper emitter.
import micropython


@micropython.viper
def sum16(seg, n: int) -> int:
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
