# Provisioning frame codec and console splitter (both interpreters).
import struct

from util import raises
from sipling.provision import frame


def test_pack_unpack_roundtrip():
    b = frame.pack(frame.CHUNK, 7, b"\x00\x00\x00\x10hello")
    assert b[0] == frame.VERSION and b[1] == frame.CHUNK and b[2] == 7
    assert struct.unpack(">H", b[3:5])[0] == 9
    assert frame.unpack(b) == (1, frame.CHUNK, 7, b"\x00\x00\x00\x10hello")


def test_crc_is_binascii_crc32_big_endian():
    import binascii
    b = frame.pack(frame.HELLO, 1)
    assert len(b) == 9
    assert struct.unpack(">I", b[5:])[0] == binascii.crc32(b[:5]) & 0xFFFFFFFF


def test_every_single_bit_flip_is_caught():
    b = frame.pack(frame.COMMIT, 3, bytes(range(32)))
    for i in range(len(b)):
        for bit in (1, 0x80):
            bad = bytearray(b)
            bad[i] ^= bit
            raises(frame.FrameError, frame.unpack, bytes(bad))


def test_truncated_and_trailing_bytes_refused():
    b = frame.pack(frame.BEGIN, 2, b"abc")
    for n in range(len(b)):
        raises(frame.FrameError, frame.unpack, b[:n])
    raises(frame.FrameError, frame.unpack, b + b"\x00")


def test_payload_limit():
    raises(ValueError, frame.pack, frame.CHUNK, 0, bytes(frame.MAX_PAYLOAD + 1))
    assert frame.unpack(frame.pack(frame.CHUNK, 0, bytes(frame.MAX_PAYLOAD)))[3] == bytes(frame.MAX_PAYLOAD)


def test_line_encoding_is_tty_safe():
    # every byte value in the payload: the line carries only base64 text between marker and \n
    line = frame.encode(frame.CHUNK, 255, bytes(range(256)))
    assert line[:1] == frame.MARKER and line[-1:] == b"\n"
    for c in line[1:-1]:
        assert c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
    assert frame.decode(line[1:-1]) == (1, frame.CHUNK, 255, bytes(range(256)))


def test_chunk_line_fits_uart_buffer():
    line = frame.encode(frame.CHUNK, 1, bytes(4 + frame.CHUNK_SIZE))
    assert len(line) < 256


def test_decode_garbage():
    raises(frame.FrameError, frame.decode, b"!!!!")
    raises(frame.FrameError, frame.decode, b"")


def test_splitter_text_and_frames():
    sp = frame.Splitter()
    line = frame.encode(frame.HELLO, 9)
    out = sp.feed(b"status\r\n" + line + b"relay on\r")
    assert out == [("text", b"status"), ("frame", line[1:-1]), ("text", b"relay on")]


def test_splitter_byte_by_byte():
    sp = frame.Splitter()
    data = b"a\n" + frame.encode(frame.FPRINT, 4) + b"b\n"
    out = []
    for i in range(len(data)):
        out += sp.feed(data[i:i + 1])
    assert [k for k, _ in out] == ["text", "frame", "text"]
    assert frame.decode(out[1][1])[1] == frame.FPRINT


def test_marker_drops_half_typed_line():
    sp = frame.Splitter()
    line = frame.encode(frame.ABORT, 1)
    assert sp.feed(b"half typ" + line) == [("frame", line[1:-1])]


def test_splitter_drops_overlong_line():
    sp = frame.Splitter(max_line=16)
    assert sp.feed(b"x" * 40 + b"\nok\n") == [("text", b"ok")]
    assert sp.in_frame() is False
    sp.feed(frame.MARKER + b"abc")
    assert sp.in_frame() is True
