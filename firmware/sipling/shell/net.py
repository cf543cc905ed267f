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
    """A non-blocking UDP socket bound to host:port. No SO_REUSEADDR: a second board with
    the same ports must fail to start, not share (and steal) the first one's traffic. An
    OSError names the address that could not be bound."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(sockaddr(host, port))
    except OSError as e:
        s.close()
        raise OSError("cannot bind UDP %s:%d (%s)" % (host, port, _errname(e)))
    s.setblocking(False)
    return s


def _errname(e):
    n = e.args[0] if e.args else 0
    return "address in use" if n in (98, 48, 112) else str(e)
