# Inner UDP segment for ESP transport mode (RFC 768 header and checksum; RFC 3948 3.1.2).
# The checksum covers the RFC 768 pseudo-header (source and destination address, zero,
# protocol 17, UDP length), so a standard receiver accepts the segment after ESP
# processing. The one's-complement sum of 16-bit words equals the big-endian integer of
# the bytes modulo 0xFFFF (2**16 = 1 mod 0xFFFF), so the plain sum runs in C through
# int.from_bytes; on MicroPython a viper loop (viper_sum.py) avoids the big-int garbage.
# On receipt the ICV already authenticates the segment and a NAT may have changed the
# outer addresses, so the inner checksum is not re-verified (RFC 3948 section 3.1.2).
import struct
from micropython import const

from . import codec
from .sa import BAD_INNER

_NH_UDP = const(17)
_UDP_HDR = const(8)


def ip4(addr):
    """4 address bytes from '1.2.3.4' (str or bytes) or 4 bytes."""
    if isinstance(addr, (bytes, bytearray)) and len(addr) == 4:
        return bytes(addr)
    if isinstance(addr, (bytes, bytearray)):
        addr = addr.decode()
    parts = addr.split(".")
    if len(parts) != 4:
        raise ValueError("not an IPv4 address")
    return bytes(int(p) for p in parts)


def _sum16_plain(seg, n):
    # sum of big-endian 16-bit words modulo 0xFFFF (odd length: zero byte appended)
    v = int.from_bytes(seg[0:n], "big")
    if n & 1:
        v <<= 8
    return v % 0xFFFF


_sum16 = None


def _pick():
    # the viper sum16 where this port can run it (no allocation), else the plain loop
    global _sum16
    from sipling.esp.viper_pick import pick
    _sum16 = pick("sum16", _sum16_plain)


def checksum(src4, dst4, seg, n):
    """RFC 768 checksum of the UDP segment seg[0:n] (its checksum field set to zero)."""
    s = (src4[0] << 8 | src4[1]) + (src4[2] << 8 | src4[3])
    s += (dst4[0] << 8 | dst4[1]) + (dst4[2] << 8 | dst4[3])
    s += _NH_UDP + n
    if _sum16 is None:
        _pick()
    s = (s + _sum16(seg, n)) % 0xFFFF
    c = 0xFFFF - s
    return c if c else 0xFFFF  # RFC 768: a computed zero is sent as all ones


def protect_udp(sa, src, dst, sport, dport, data):
    """Build UDP(sport->dport, data) with its checksum inside sa's buffer and seal it
    with ESP; returns the ESP packet (memoryview into sa.buf)."""
    n = _UDP_HDR + len(data)
    po = sa.payload_off
    if po + n > len(sa.buf):
        raise ValueError("datagram too large for the SA buffer")
    b = sa.buf
    struct.pack_into(">HHHH", b, po, sport, dport, n, 0)
    b[po + _UDP_HDR:po + n] = data
    c = checksum(ip4(src), ip4(dst), sa.mv[po:po + n], n)
    struct.pack_into(">H", b, po + 6, c)
    return codec.seal(sa, n, _NH_UDP)


def open_udp(db, pkt, now_ms=None):
    """unprotect() + inner UDP header. Returns (sa, sport, dport, payload memoryview) or
    None; a bad inner header after a good ICV counts as bad_inner."""
    sa = codec.unprotect(db, pkt, now_ms)
    if sa is None:
        return None
    n = sa.rx_len
    o = sa.rx_off
    b = sa.buf
    if sa.rx_nh != _NH_UDP or n < _UDP_HDR:
        db.drops[BAD_INNER] += 1
        return None
    sport = (b[o] << 8) | b[o + 1]
    dport = (b[o + 2] << 8) | b[o + 3]
    ulen = (b[o + 4] << 8) | b[o + 5]
    if ulen < _UDP_HDR or ulen > n:
        db.drops[BAD_INNER] += 1
        return None
    return sa, sport, dport, sa.mv[o + _UDP_HDR:o + ulen]
