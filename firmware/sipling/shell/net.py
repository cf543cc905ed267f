# Socket address shim: the ESP32 port and CPython use ('ip', port) tuples, the unix port
# uses raw sockaddr bytes (its sendto() refuses tuples). Everything above the shell
# sees addresses as (ip_str, port) tuples; only this module knows the difference.
import socket
import struct

_AF_INET_LE = b"\x02\x00"  # sockaddr_in.sin_family on Linux (host byte order)


def sockaddr(host, port):
    """The address object this port's sendto()/bind() accept for (host, port)."""
    return socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0][-1]


def peer(addr):
    """(ip_str, port) for an address returned by recvfrom() on any port."""
    if isinstance(addr, tuple):
        return addr[0], addr[1]
    b = bytes(addr)
    if len(b) >= 8 and (b[:2] == _AF_INET_LE or b[:2] == b"\x00\x02"):
        port = struct.unpack(">H", b[2:4])[0]
        return "%d.%d.%d.%d" % (b[4], b[5], b[6], b[7]), port
    raise ValueError("unsupported sockaddr")


def udp_socket(host, port):
    """A non-blocking UDP socket bound to host:port (SO_REUSEADDR set)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(sockaddr(host, port))
    s.setblocking(False)
    return s
