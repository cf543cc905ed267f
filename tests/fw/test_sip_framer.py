# Content-Length framing over a byte stream (RFC 3261 18.3, 7.5; RFC 4475 3.1.2.2/3, 3.3.9).
from util import raises

from sipling.sip.message import SipError
from sipling.sip.framer import StreamFramer
from sipling.sip.parser import parse

A = (b"MESSAGE sip:owner@example.com SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKa\r\n"
     b"From: <sip:dev@example.com>;tag=1\r\nTo: <sip:owner@example.com>\r\nCall-ID: a1\r\n"
     b"CSeq: 1 MESSAGE\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nrelay on\n")
B = (b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP 192.0.2.7;branch=z9hG4bKa\r\n"
     b"From: <sip:dev@example.com>;tag=1\r\nTo: <sip:owner@example.com>;tag=2\r\nCall-ID: a1\r\n"
     b"CSeq: 1 MESSAGE\r\nl: 0\r\n\r\n")


def _feed(f, data, step):
    out = []
    for i in range(0, len(data), step):
        out.extend(f.feed(data[i:i + step]))
    return out


def test_any_chunking():
    stream = A + B + b"\r\n\r\n" + A + b"\r\n" + B
    for step in (1, 2, 3, 5, 17, 64, 1000):
        f = StreamFramer()
        assert _feed(f, stream, step) == [A, B, A, B], step
        assert f.pending() == 0
        assert parse(A).body == b"relay on\n"


def test_partial_body_waits():
    f = StreamFramer()
    assert f.feed(A[:-3]) == [] and f.pending() == len(A) - 3
    assert f.feed(A[-3:] + B[:10]) == [A]
    assert f.feed(B[10:]) == [B]


def test_keepalive_only():
    f = StreamFramer()
    assert f.feed(b"\r\n\r\n") == [] and f.feed(b"\r") == [] and f.feed(b"\n") == []
    assert f.pending() == 0
    assert f.feed(B) == [B]


def test_framing_errors():
    for bad, status, what in (
            (A.replace(b"Content-Length: 9", b"Content-Length: -9"), 400, "Bad Content-Length"),
            (A.replace(b"Content-Length: 9", b"Content-Length: 9\r\nl: 8"), 400, "Conflicting"),
            (A.replace(b"Content-Length: 9\r\n", b""), 400, "Missing Content-Length"),
            (A.replace(b"Content-Length: 9", b"Content-Length: 99999999"), 413, "Entity Too Large")):
        e = raises(SipError, StreamFramer().feed, bad)
        assert e.status == status and what in e.reason, (e.status, e.reason)
    f = StreamFramer(max_message=100)
    e = raises(SipError, f.feed, b"INVITE sip:x SIP/2.0\r\n" + b"X: y\r\n" * 20)
    assert e.status == 513
    e = raises(SipError, StreamFramer(max_message=300).feed, A.replace(b"Content-Length: 9", b"Content-Length: 290"))
    assert e.status == 513


def test_folded_content_length_and_compact():
    f = StreamFramer()
    m = A.replace(b"Content-Length: 9", b"Content-Length:\r\n 9")
    assert f.feed(m) == [m]
    m2 = A.replace(b"Content-Length: 9", b"L : 9")
    assert StreamFramer().feed(m2 + m2) == [m2, m2]
