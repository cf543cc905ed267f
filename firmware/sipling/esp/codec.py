# ESP transport-mode packet codec, RFC 4303 (sans-IO: bytes in, bytes out).
#
#   0      4      8        8+iv                                   n-icv     n
#   | SPI  | Seq  |  IV    | payload | pad 1,2,3.. | padlen | nh |   ICV    |
#                 |<------------- encrypted (block-aligned) ------>|
#   |<----------------- covered by the ICV (section 3.3.4) ------->|
#
# Outbound: the packet is built in the SA's own buffer (no allocation for the packet).
# Inbound (section 3.4): SA by SPI, length sanity, replay pre-check, ICV (constant-time),
# only then the replay window moves (3.4.3), then decryption and the pad check. Every
# failure returns None and bumps one counter in SADB.drops; nothing is sent back, so all
# authentication failures look alike to the sender.
import struct
from micropython import const

from .sa import BAD_ICV, BAD_PAD, REPLAY, TOO_SHORT, UNKNOWN_SPI, EspError

_HDR = const(8)
_NH_UDP = const(17)


def seal(sa, n, nh=_NH_UDP):
    """Protect the n payload bytes already at sa.buf[sa.payload_off:]; returns a
    memoryview of the whole ESP packet in sa.buf (valid until the next seal on sa)."""
    enc = sa.enc
    blk = enc.block
    po = sa.payload_off
    total = n + 2
    padded = (total + blk - 1) // blk * blk
    padlen = padded - total
    icv_len = sa.auth.icv_len
    end = po + padded
    if end + icv_len > len(sa.buf):
        raise EspError("payload too large for the SA buffer")
    seqno = sa.counter.take()  # raises SeqExhausted rather than cycle (3.3.3)
    b = sa.buf
    mv = sa.mv
    struct.pack_into(">II", b, 0, sa.spi, seqno)
    i = po + n
    for k in range(1, padlen + 1):  # RFC 4303 2.4: pad bytes 1, 2, 3, ...
        b[i] = k
        i += 1
    b[i] = padlen
    b[i + 1] = nh
    enc.encrypt(b, mv, _HDR, padded)  # writes the IV, encrypts payload + trailer
    sa.auth.icv_into(mv[0:end], b, end)
    sa.packets += 1
    sa.bytes += n
    return mv[0:end + icv_len]


def payload_area(sa):
    """Writable view where the caller may place the payload before seal()."""
    return sa.mv[sa.payload_off:]


def protect(sa, payload, nh=_NH_UDP):
    """Copy payload into the SA buffer and seal it; returns the packet as a memoryview."""
    n = len(payload)
    po = sa.payload_off
    if po + n > len(sa.buf):
        raise EspError("payload too large for the SA buffer")
    sa.buf[po:po + n] = payload
    return seal(sa, n, nh)


def unprotect(db, pkt, now_ms=None):
    """Check and decrypt one ESP packet. Returns the inbound SA, whose
    buf[rx_off:rx_off+rx_len] holds the payload (see payload()) and rx_nh the next
    header; or None (counted in db.drops)."""
    n = len(pkt)
    drops = db.drops
    if n < _HDR:
        drops[TOO_SHORT] += 1
        return None
    spi = (pkt[0] << 24) | (pkt[1] << 16) | (pkt[2] << 8) | pkt[3]
    sa = db.lookup(spi, now_ms)
    if sa is None:
        drops[UNKNOWN_SPI] += 1
        return None
    enc = sa.enc
    icv_len = sa.auth.icv_len
    po = sa.payload_off
    ct = n - po - icv_len  # encrypted part: payload + pad + padlen + nh
    blk = enc.block
    if ct < 2 or (enc.iv_len and ct % blk) or po + ct > len(sa.buf):
        drops[TOO_SHORT] += 1
        return None
    seqno = (pkt[4] << 24) | (pkt[5] << 16) | (pkt[6] << 8) | pkt[7]
    win = sa.window
    if not win.check(seqno):
        drops[REPLAY] += 1
        return None
    if not isinstance(pkt, memoryview):
        pkt = memoryview(pkt)
    end = n - icv_len
    if not sa.auth.verify(pkt[0:end], pkt, end):
        drops[BAD_ICV] += 1
        return None
    win.update(seqno)  # only after the ICV verified (3.4.3)
    out = sa.buf
    ro = enc.decrypt(pkt, _HDR, ct, sa.mv)  # plaintext at out[ro:ro+ct]
    ct += ro
    padlen = out[ct - 2]
    if padlen > ct - ro - 2:
        drops[BAD_PAD] += 1
        return None
    k = ct - 2 - padlen
    for v in range(1, padlen + 1):  # 2.4: receivers check the pad contents
        if out[k] != v:
            drops[BAD_PAD] += 1
            return None
        k += 1
    sa.rx_off = ro
    sa.rx_len = ct - ro - 2 - padlen
    sa.rx_nh = out[ct - 1]
    sa.packets += 1
    sa.bytes += sa.rx_len
    return sa


def payload(sa):
    """The payload of the last packet accepted on inbound SA sa (a memoryview)."""
    return sa.mv[sa.rx_off:sa.rx_off + sa.rx_len]
