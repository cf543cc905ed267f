"""SIP traces from the device log as a pcap file (Wireshark, tshark, sngrep).

The board logs each SIP message it sends or takes as one line (``sipling.log.trace``):
``<ms> TRACE <in|out> <udp|tcp> <src ip:port> <dst ip:port> <base64>``. The messages
travel inside ESP on the wire; the trace is the plaintext, so each one is wrapped here in
synthesized Ethernet (linktype 1) + IPv4 + UDP (or TCP with per-flow sequence numbers)
headers with valid checksums, and SIP dissects as it would on port 5060.
"""
import binascii
import socket
import struct
import time

LINKTYPE_ETHERNET = 1
_MAGIC = 0xA1B2C3D4


def parse_trace(line):
    """(ms, direction, proto, (src_ip, src_port), (dst_ip, dst_port), data) or None."""
    parts = line.strip().split(" ")
    if len(parts) != 7 or parts[1] != "TRACE" or not parts[0].isdigit():
        return None
    try:
        src = _addr(parts[4])
        dst = _addr(parts[5])
        data = binascii.a2b_base64(parts[6])
    except (ValueError, OSError, binascii.Error):
        return None
    return int(parts[0]), parts[2], parts[3], src, dst, data


def _addr(text):
    host, _, port = text.rpartition(":")
    socket.inet_pton(socket.AF_INET, host)
    p = int(port)
    if not 0 <= p < 65536:
        raise ValueError("port")
    return host, p


def _csum(data):
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _mac(ip):
    return b"\x02\x00" + socket.inet_aton(ip)


class PcapWriter:
    """Classic pcap (v2.4, microseconds), one record per traced message; flushed each time."""

    def __init__(self, f, snaplen=262144):
        self.f = f
        self._ipid = 0
        self._tcpseq = {}
        f.write(struct.pack("<IHHiIII", _MAGIC, 2, 4, 0, 0, snaplen, LINKTYPE_ETHERNET))
        f.flush()
        self.count = 0

    def _ipv4(self, proto, src, dst, l4):
        self._ipid = (self._ipid + 1) & 0xFFFF
        hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), self._ipid, 0x4000, 64, proto, 0,
                          socket.inet_aton(src), socket.inet_aton(dst))
        hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
        return hdr + l4

    def _pseudo(self, proto, src, dst, l4):
        return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, len(l4)) + l4

    def udp(self, src, dst, payload):
        l4 = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
        c = _csum(self._pseudo(17, src[0], dst[0], l4)) or 0xFFFF
        l4 = l4[:6] + struct.pack("!H", c) + l4[8:]
        return self._ipv4(17, src[0], dst[0], l4)

    def tcp(self, src, dst, payload):
        key = (src, dst)
        seq = self._tcpseq.get(key, 1)
        ack = self._tcpseq.get((dst, src), 1)
        self._tcpseq[key] = (seq + len(payload)) & 0xFFFFFFFF
        l4 = struct.pack("!HHIIBBHHH", src[1], dst[1], seq, ack, 5 << 4, 0x18, 65535, 0, 0) + payload
        c = _csum(self._pseudo(6, src[0], dst[0], l4))
        l4 = l4[:16] + struct.pack("!H", c) + l4[18:]
        return self._ipv4(6, src[0], dst[0], l4)

    def write(self, ts, proto, src, dst, payload):
        """One message at time ts (seconds, float) from src to dst ((ip, port) each)."""
        ip = self.tcp(src, dst, payload) if proto == "tcp" else self.udp(src, dst, payload)
        pkt = _mac(dst[0]) + _mac(src[0]) + b"\x08\x00" + ip
        sec = int(ts)
        usec = int((ts - sec) * 1e6)
        self.f.write(struct.pack("<IIII", sec, usec, len(pkt), len(pkt)) + pkt)
        self.f.flush()
        self.count += 1

    def write_trace_line(self, line, ts=None):
        """Add the packet of a TRACE log line; False if the line is no trace."""
        t = parse_trace(line)
        if t is None:
            return False
        self.write(time.time() if ts is None else ts, t[2], t[3], t[4], t[5])
        return True
