# ESP carriers: the only ESP code that touches sockets.
#
# UdpCarrier: ESP-in-UDP (RFC 3948). One socket on the encapsulation port (4500 unless
#   configured) carries every SA; the ESP packet is the whole UDP payload (section 2.2),
#   a lone 0xFF byte is a NAT keep-alive (section 2.3): sent when nothing else went out
#   for keepalive_ms (section 4, default 20 s) and ignored on receipt. A payload starting
#   with the 4-byte non-ESP marker (zero SPI) belongs to IKE and is ignored. Replies go
#   to the address and port the last authenticated ESP came from (what survives a NAT),
#   but only a packet that moved its SA's replay window forward re-points them: an older
#   packet still inside the window (delayed, or re-injected by an on-path attacker from
#   another address) is delivered but does not redirect our traffic (the rule IKEv2 uses for
#   NAT address updates, RFC 7296 2.23: authenticated and newer than anything seen).
# RawCarrier: ESP directly in IPv4 as protocol 50 on a SOCK_RAW socket (root on the unix
#   port; whether lwIP on ESP32 delivers protocol 50 to raw sockets is unverified).
#
# Both hand inbound datagrams to the sans-IO core (esp.udp.open_udp) and return
# (sa, sport, dport, payload) with payload a memoryview valid until the next packet.
import socket

from ..esp import udp as esp_udp
from . import net

_KEEPALIVE = b"\xff"
_IPPROTO_ESP = 50


class _Carrier:
    # what both carriers share: protect-and-send, one non-blocking receive, close

    def send_udp(self, sa, src_ip, dst_ip, sport, dport, data, now_ms=0):
        """Protect one inner UDP datagram with sa and send it to the peer."""
        self.send(esp_udp.protect_udp(sa, src_ip, dst_ip, sport, dport, data), now_ms)

    def receive(self, now_ms, bufsize=2048):
        """One datagram from the socket (non-blocking): the accepted inner datagram or None."""
        try:
            data, addr = self.sock.recvfrom(bufsize)
        except OSError:
            return None
        return self.handle_datagram(data, addr, now_ms)

    def close(self):
        self.sock.close()

    def _open(self, pkt, now_ms):
        # (result, moved): moved is True when the packet raised its SA's window top
        spi = (pkt[0] << 24) | (pkt[1] << 16) | (pkt[2] << 8) | pkt[3] if len(pkt) >= 4 else -1
        sa = self.db.inbound.get(spi)
        before = sa.window.top if sa is not None and sa.window is not None else None
        try:
            r = esp_udp.open_udp(self.db, pkt, now_ms)
        except Exception:  # e.g. the replay mark could not be stored: not accepted
            self.errors += 1
            return None, False
        if r is None:
            return None, False
        w = r[0].window
        return r, before is None or (w is not None and w.top > before)


class UdpCarrier(_Carrier):
    def __init__(self, db, host="0.0.0.0", port=4500, keepalive_ms=20000, sock=None):
        self.db = db
        self.sock = sock or net.udp_socket(host, port)
        self.keepalive_ms = keepalive_ms
        self.peer = None  # (ip, port)
        self._peer_addr = None
        self._next_ka = None
        self.keepalives_rx = 0
        self.keepalives_tx = 0
        self.non_esp = 0
        self.errors = 0

    def set_peer(self, ip, port, now_ms=0):
        if self.peer != (ip, port):
            self.peer = (ip, port)
            self._peer_addr = net.sockaddr(ip, port)
        if self._next_ka is None and self.keepalive_ms:
            self._next_ka = now_ms + self.keepalive_ms

    def send(self, pkt, now_ms=0):
        if self._peer_addr is None:
            raise ValueError("no peer: call set_peer() first")
        self.sock.sendto(pkt, self._peer_addr)
        if self.keepalive_ms:
            self._next_ka = now_ms + self.keepalive_ms

    def next_timer(self):
        return self._next_ka

    def poll(self, now_ms):
        """Send the NAT keep-alive when it is due (call when next_timer() passes)."""
        if self._next_ka is not None and self._peer_addr is not None and now_ms >= self._next_ka:
            self.sock.sendto(_KEEPALIVE, self._peer_addr)
            self.keepalives_tx += 1
            self._next_ka = now_ms + self.keepalive_ms

    def handle_datagram(self, data, addr, now_ms):
        if len(data) == 1 and data[0] == 0xFF:
            self.keepalives_rx += 1
            return None
        if len(data) >= 4 and data[0] == 0 and data[1] == 0 and data[2] == 0 and data[3] == 0:
            self.non_esp += 1  # RFC 3948 2.2 non-ESP marker (IKE): not ours
            return None
        r, moved = self._open(data, now_ms)
        if moved:
            ip, port = net.peer(addr)
            if self.peer != (ip, port):  # follow the authenticated source (NAT rebinding)
                self.peer = (ip, port)
                self._peer_addr = addr
        return r

class RawCarrier(_Carrier):
    def __init__(self, db, host="0.0.0.0", sock=None):
        self.db = db
        if sock is None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, _IPPROTO_ESP)
            sock.bind(net.sockaddr(host, 0))
            sock.setblocking(False)
        self.sock = sock
        self.peer = None
        self._peer_addr = None
        self.errors = 0

    def set_peer(self, ip, port=0, now_ms=0):
        self.peer = (ip, 0)
        self._peer_addr = net.sockaddr(ip, 0)

    def send(self, pkt, now_ms=0):
        if self._peer_addr is None:
            raise ValueError("no peer: call set_peer() first")
        self.sock.sendto(pkt, self._peer_addr)  # the kernel adds the IPv4 header

    def next_timer(self):
        return None

    def poll(self, now_ms):
        pass

    def handle_datagram(self, data, addr, now_ms):
        # Raw IPv4 sockets deliver the IP header: skip IHL * 4 bytes (RFC 791).
        if len(data) < 20 or (data[0] >> 4) != 4 or data[9] != _IPPROTO_ESP:
            return None
        ihl = (data[0] & 15) * 4
        r, moved = self._open(memoryview(data)[ihl:], now_ms)
        if moved:
            src = "%d.%d.%d.%d" % (data[12], data[13], data[14], data[15])
            if self.peer != (src, 0):
                self.set_peer(src)
        return r
