# Provisioning frame codec, shared by the device (sipling.provision.device) and the host
# (sipling_host.provision). Written once; both ends import this file.
#
# Binary frame (big-endian):
#   0  version u8   (VERSION)
#   1  type    u8   (HELLO..ABORT requests, OK/ERR replies)
#   2  seq     u8   (a reply carries the seq of its request)
#   3  length  u16  (payload bytes, <= MAX_PAYLOAD)
#   5  payload
#   .. crc32   u32  (binascii.crc32 over bytes 0 .. 5+length)
#
# On the console a frame travels as one text line: MARKER, base64 of the binary frame,
# "\n". MARKER (0x1E, ASCII record separator) is not produced by typing, is inert at the
# MicroPython REPL and is no tty signal character (unlike ^C ^Z ^\), and base64 keeps
# every other control byte off the wire, so frames pass a tty with ISIG on and a UART
# whose ^C raises KeyboardInterrupt. A frame line is never echoed.
from micropython import const
import binascii
import struct

VERSION = const(1)
MARKER = b"\x1e"
_MARK = const(0x1E)

HELLO = const(1)    # -> OK json {"proto","fw","chunk","max","fp":{name: hex|None}}
BEGIN = const(2)    # size u32, sha256[32], name utf-8 -> OK received u32
CHUNK = const(3)    # offset u32, data -> OK received u32 | ERR E_OFFSET expected u32
COMMIT = const(4)   # sha256[32] -> OK sha256[32] of the stored file
FPRINT = const(5)   # -> OK json {name: sha256 hex or None}
ABORT = const(6)    # -> OK
BYE = const(7)      # -> OK; ends serve_provisioning() at the REPL
OK = const(0x80)
ERR = const(0x81)   # code u8, text utf-8
NAMES = {HELLO: "HELLO", BEGIN: "BEGIN", CHUNK: "CHUNK", COMMIT: "COMMIT",
         FPRINT: "FPRINT", ABORT: "ABORT", BYE: "BYE", OK: "OK", ERR: "ERR"}

# ERR codes
E_FRAME = const(1)     # bad base64 / length / CRC (seq 0: the request could not be read)
E_VERSION = const(2)   # payload: the version the device speaks
E_TYPE = const(3)
E_STATE = const(4)     # no transfer in progress
E_OFFSET = const(5)    # payload after code: expected offset u32
E_SIZE = const(6)
E_DIGEST = const(7)
E_STORE = const(8)
E_NAME = const(9)

MAX_PAYLOAD = const(512)
CHUNK_SIZE = const(128)   # data bytes per CHUNK: a frame line stays under a 256-byte UART buffer
MAX_LINE = const(1024)    # longest console line kept (text or frame); longer lines are dropped
_HDR = const(5)


class FrameError(Exception):
    pass


def crc32(data):
    return binascii.crc32(data) & 0xFFFFFFFF


def pack(ftype, seq, payload=b""):
    """Binary frame for (type, seq, payload)."""
    n = len(payload)
    if n > MAX_PAYLOAD:
        raise ValueError("payload too long")
    b = bytearray(_HDR + n + 4)
    struct.pack_into(">BBBH", b, 0, VERSION, ftype, seq & 0xFF, n)
    b[_HDR:_HDR + n] = payload
    struct.pack_into(">I", b, _HDR + n, crc32(memoryview(b)[:_HDR + n]))
    return bytes(b)


def unpack(frame):
    """(version, type, seq, payload) of a binary frame; FrameError on length or CRC."""
    if len(frame) < _HDR + 4:
        raise FrameError("short")
    ver, ftype, seq, n = struct.unpack_from(">BBBH", frame, 0)
    if len(frame) != _HDR + n + 4:
        raise FrameError("length")
    (crc,) = struct.unpack_from(">I", frame, _HDR + n)
    if crc != crc32(memoryview(frame)[:_HDR + n]):
        raise FrameError("crc")
    return ver, ftype, seq, bytes(frame[_HDR:_HDR + n])


def encode(ftype, seq, payload=b""):
    """The console line (MARKER + base64 + "\\n") for one frame."""
    return MARKER + binascii.b2a_base64(pack(ftype, seq, payload)).strip() + b"\n"


def decode(body):
    """(version, type, seq, payload) from a frame line's body (the text after MARKER)."""
    body = bytes(body).strip()
    try:
        raw = binascii.a2b_base64(body)
    except Exception:
        raise FrameError("base64")
    return unpack(raw)


def err_payload(code, text=""):
    return bytes([code]) + text.encode()


class Splitter:
    """Splits a console byte stream into ("text", line) and ("frame", body) items.

    A text line ends at "\\r" or "\\n" (empty lines are skipped). MARKER starts a frame
    anywhere (a half-typed text line before it is dropped); the frame ends at "\\n" or
    "\\r". Lines longer than MAX_LINE are dropped whole. Used by the device console and by
    the host to read the device's output.
    """

    def __init__(self, max_line=MAX_LINE):
        self._buf = bytearray()
        self._frame = False
        self._drop = False
        self._max = max_line

    def feed(self, data):
        out = []
        buf = self._buf
        for c in bytes(data):
            if c == _MARK:
                buf[:] = b""
                self._frame = True
                self._drop = False
            elif c == 10 or c == 13:
                if buf and not self._drop:
                    out.append(("frame" if self._frame else "text", bytes(buf)))
                buf[:] = b""
                self._frame = False
                self._drop = False
            elif not self._drop:
                if len(buf) >= self._max:
                    buf[:] = b""
                    self._drop = True
                else:
                    buf.append(c)
        return out

    def pending(self):
        """The bytes of the unfinished line (a prompt such as the raw REPL's "\\x04>")."""
        return bytes(self._buf)

    def in_frame(self):
        """True while the bytes of a frame line are arriving (the console must not echo)."""
        return self._frame
