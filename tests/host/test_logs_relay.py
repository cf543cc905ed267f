"""sipling logs without a board: line parsing, filters, colours, frames dropped, pcap bytes."""
import binascii
import io
import struct

from sipling import log
from sipling.provision import frame
from sipling_host import logs, pcap

MSG = b"OPTIONS sip:door@example.test SIP/2.0\r\nCall-ID: x\r\nContent-Length: 0\r\n\r\n"


def _device_lines():
    """Lines produced by the firmware's own log module (the format is written once)."""
    lines = []
    log.set_sink(lines.append)
    log.set_clock(lambda: 777)
    log.set_level("debug")
    log.debug("esp", "replay window moved")
    log.info("ua", "registered")
    log.warn("secagree", "494 to a protected request")
    log.error("esp", "icv")
    log.trace("in", "udp", ("127.0.0.1", 5060), ("127.0.0.1", 5064), MSG)
    log.set_sink(None)
    log.set_clock(None)
    log.set_level("info")
    return "".join(lines).encode()


def _relay(**kw):
    out, f = io.StringIO(), io.StringIO()
    r = logs.Relay(out=out, logfile=f, clock=lambda: 0.25, **kw)
    return r, out, f


def test_parse_line():
    assert logs.parse_line("12 INFO ua: registered as door") == (12, "INFO", "ua", "registered as door")
    assert logs.parse_line("12 ERROR esp:") == (12, "ERROR", "esp", "")
    assert logs.parse_line("Traceback (most recent call last):") == (None, None, None, "Traceback (most recent call last):")
    assert logs.parse_line("12 LOUD x: y")[1] is None


def test_relay_shows_all_levels_with_stamps_and_drops_frames():
    r, out, f = _relay()
    data = _device_lines() + frame.encode(frame.OK, 3, b'{"config": null}') + b">>> \n"
    for i in range(0, len(data), 7):
        r.feed(data[i:i + 7])
    lines = f.getvalue().splitlines()
    stamp = lines[0].split(" ")[0]
    assert len(stamp) == 12 and stamp.endswith(".250")
    body = [ln.split(" ", 1)[1] for ln in lines]
    assert body == ["777 DEBUG esp: replay window moved", "777 INFO ua: registered",
                    "777 WARN secagree: 494 to a protected request", "777 ERROR esp: icv",
                    "777 TRACE <- 127.0.0.1:5060 udp OPTIONS sip:door@example.test SIP/2.0 (%d bytes)" % len(MSG),
                    ">>> "]
    assert out.getvalue() == f.getvalue()          # no colour unless asked


def test_filters_and_colour():
    r, out, f = _relay(flt=logs.Filter("warn"), colour=True)
    r.feed(_device_lines())
    assert [ln.split(" ", 2)[2] for ln in f.getvalue().splitlines()] == [
        "WARN secagree: 494 to a protected request", "ERROR esp: icv",
        "TRACE <- 127.0.0.1:5060 udp OPTIONS sip:door@example.test SIP/2.0 (%d bytes)" % len(MSG)]
    assert "\033[31;1m777 ERROR esp: icv\033[0m" in out.getvalue()
    r, out, f = _relay(flt=logs.Filter("debug", modules=["esp"], traces=False))
    r.feed(_device_lines())
    assert len(f.getvalue().splitlines()) == 2
    r, out, f = _relay(flt=logs.Filter("debug", grep="registered"))
    r.feed(_device_lines())
    assert f.getvalue().endswith("777 INFO ua: registered\n")


def test_pcap_from_relay_is_well_formed():
    buf = io.BytesIO()
    r, out, f = _relay(pcap=pcap.PcapWriter(buf), flt=logs.Filter("error", traces=False))
    r.feed(_device_lines())
    b = buf.getvalue()
    magic, vmaj, vmin, _, _, snap, link = struct.unpack("<IHHiIII", b[:24])
    assert (magic, vmaj, vmin, link) == (0xA1B2C3D4, 2, 4, 1)
    sec, usec, incl, orig = struct.unpack("<IIII", b[24:40])
    assert (sec, usec) == (0, 250000) and incl == orig == len(b) - 40 == 14 + 20 + 8 + len(MSG)
    pkt = b[40:]
    assert pkt[12:14] == b"\x08\x00"
    ip = pkt[14:34]
    assert ip[9] == 17 and ip[12:16] == bytes([127, 0, 0, 1])
    assert pcap._csum(ip) == 0                      # header checksum verifies
    sport, dport, ulen = struct.unpack("!HHH", pkt[34:40])
    assert (sport, dport, ulen) == (5060, 5064, 8 + len(MSG))
    assert pkt[42:] == MSG


def test_parse_trace_rejects_damaged_lines():
    good = "5 TRACE out udp 127.0.0.1:1 127.0.0.1:2 " + binascii.b2a_base64(b"x").decode().strip()
    assert pcap.parse_trace(good)[5] == b"x"
    assert pcap.parse_trace(good + " extra") is None
    assert pcap.parse_trace(good.replace("127.0.0.1:1", "localhost:1")) is None
    assert pcap.parse_trace(good[:-3] + "*") is None
    assert pcap.parse_trace("5 INFO m: x") is None


def test_pcap_times_follow_the_device_clock():
    buf = io.BytesIO()
    now = [100.0]
    r = logs.Relay(pcap=pcap.PcapWriter(buf), clock=lambda: now[0])
    b64 = binascii.b2a_base64(MSG).decode().strip()
    r.feed(("1000 TRACE out udp 127.0.0.1:1 127.0.0.1:2 %s\n" % b64).encode())
    # two more arrive in one burst: their device times, not the arrival time, are kept
    now[0] = 100.9
    r.feed(("1250 TRACE in udp 127.0.0.1:2 127.0.0.1:1 %s\n1700 TRACE out udp 127.0.0.1:1 127.0.0.1:2 %s\n"
            % (b64, b64)).encode())
    # the device rebooted: its clock starts again
    now[0] = 200.0
    r.feed(("5 TRACE out udp 127.0.0.1:1 127.0.0.1:2 %s\n" % b64).encode())
    b = buf.getvalue()
    stamps = []
    off = 24
    while off < len(b):
        sec, usec, incl, _ = struct.unpack("<IIII", b[off:off + 16])
        stamps.append(round(sec + usec / 1e6, 3))
        off += 16 + incl
    assert stamps == [100.0, 100.25, 100.7, 200.0]
