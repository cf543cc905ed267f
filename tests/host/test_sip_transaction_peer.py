"""Our RFC 3261 section 17 layer (firmware/sipling/sip/transaction.py) against Kamailio 5.6 tm.

Kamailio's transaction module runs with T1=100 ms / T2=400 ms on a free loopback port; our
layer is pumped with real datagrams and a real clock (the only place it meets one):

1. client INVITE -> Kamailio answers 486 statefully: our layer's ACK (17.1.1.3) must match
   Kamailio's server transaction, so its 486 retransmissions (timer G) stop. Control: the
   same without sending the ACK, and Kamailio keeps retransmitting while we absorb them.
2. Kamailio relays a MESSAGE to us and retransmits it (its timer E) while we stay silent: we
   pass one request up and absorb the rest; our 200 matches Kamailio's client transaction
   (it forwards it to the sender).
3. Kamailio relays an INVITE to us; we answer 486; Kamailio's hop-by-hop ACK must match our
   server transaction (Confirmed), which stops our timer G.
No timing assertions: only counts of messages seen within generous windows.
"""
import socket
import time

import pytest

from sipling.sip import message
from sipling.sip.parser import parse
from sipling.sip.transaction import (COMPLETED, CONFIRMED, EV_ABSORBED, EV_REQUEST, EV_RESPONSE,
                                     TERMINATED, TransactionLayer)

import peers


CFG = peers.KAMAILIO_HEAD + """loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "textops.so"
modparam("tm", "retr_timer1", 100)
modparam("tm", "retr_timer2", 400)
modparam("tm", "fr_timer", 6400)
modparam("tm", "fr_inv_timer", 6400)
request_route {
	xlog("L_INFO", "in $rm $rU from $si:$sp branch $hdr(Via)\\n");
	if (is_method("ACK")) {
		if (t_check_trans()) { t_relay(); }
		exit;
	}
	if ($rU == "busy") {
		if (!t_newtran()) { sl_reply_error(); exit; }
		t_reply("486", "Busy Here");
		exit;
	}
	$du = "sip:127.0.0.1:%(uas)d";
	t_relay();
	exit;
}
"""


def _udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture(scope="module")
def kam():
    port = peers.free_udp_port()
    uas = _udp()
    # ready when its own 486 to an OPTIONS for "busy" comes back (nothing reaches our UAS)
    kam = peers.kamailio(CFG % {"port": port, "mpath": peers.MODULES, "uas": uas.getsockname()[1]},
                         port, probe_user="busy")
    k = type("K", (), {})()
    k.addr = ("127.0.0.1", port)
    k.uas = uas
    try:
        yield k
    finally:
        kam.cleanup()
        uas.close()


_seq = [0]


def _request(sock, method, user, branch, body=b""):
    _seq[0] += 1
    lp = sock.getsockname()[1]
    uri = b"sip:%s@127.0.0.1" % user
    hs = [(b"Via", b"SIP/2.0/UDP 127.0.0.1:%d;branch=%s;rport" % (lp, branch)),
          (b"Max-Forwards", b"70"), (b"From", b"<sip:dev@sip.test>;tag=tx%d" % _seq[0]),
          (b"To", b"<%s>" % uri), (b"Call-ID", b"txpeer-%d-%d@127.0.0.1" % (lp, _seq[0])),
          (b"CSeq", b"1 " + method), (b"Contact", b"<sip:dev@127.0.0.1:%d>" % lp)]
    if body:
        hs.append((b"Content-Type", b"text/plain"))
    return message.request(method, uri, hs, body)


class Pump:
    """Real socket + clock around a TransactionLayer."""

    def __init__(self, sock, layer, default_dest=None, send=True):
        self.sock = sock
        self.layer = layer
        self.t0 = time.monotonic()
        self.dest = default_dest
        self.send = send
        self.events = []
        self.received = []

    def now(self):
        return int((time.monotonic() - self.t0) * 1000)

    def flush(self):
        for data, dest in self.layer.datagrams_to_send():
            if self.send:
                self.sock.sendto(data, dest or self.dest)

    def run(self, seconds, stop=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if stop is not None and stop(self):
                return
            t = self.layer.get_timer()
            wait = end - time.monotonic()
            if t is not None:
                wait = min(wait, max(0.0, (t - self.now()) / 1000.0))
            self.sock.settimeout(max(0.001, wait))
            try:
                data, addr = self.sock.recvfrom(65535)
                msg = parse(data)
                self.received.append(msg)
                self.events += self.layer.receive(msg, self.now(), addr=addr)
            except socket.timeout:
                pass
            t = self.layer.get_timer()
            if t is not None and t <= self.now():
                self.events += self.layer.handle_timer(self.now())
            self.flush()


def _client_invite_busy(kam, send_ack):
    sock = _udp()
    try:
        layer = TransactionLayer(t1=100, t2=400)
        p = Pump(sock, layer, kam.addr)
        inv = _request(sock, b"INVITE", b"busy", b"z9hG4bKinv%d" % _seq[0])
        tx = layer.send_request(inv, p.now(), dest=kam.addr)
        p.flush()
        p.send = send_ack               # control: nothing more leaves, the ACK is dropped
        p.run(3, stop=lambda p: tx.state != 0 and tx.state != 2)  # until Completed
        assert tx.state == COMPLETED and tx.status == 486
        before = len([m for m in p.received if m.status == 486])
        p.run(1.2)
        after = len([m for m in p.received if m.status == 486])
        return tx, p, after - before
    finally:
        sock.close()


def test_our_ack_stops_kamailio_486_retransmissions(kam):
    tx, p, extra = _client_invite_busy(kam, send_ack=True)
    assert extra == 0
    assert [e[0] for e in p.events] == [EV_RESPONSE]


def test_without_our_ack_kamailio_retransmits_and_we_absorb(kam):
    tx, p, extra = _client_invite_busy(kam, send_ack=False)
    assert extra >= 2                      # timer G at 100, 300, 700 ms ...
    kinds = [e[0] for e in p.events]
    assert kinds[0] == EV_RESPONSE and kinds.count(EV_RESPONSE) == 1
    assert kinds.count(EV_ABSORBED) == extra


def _sender_and_uas(kam):
    sender = _udp()
    sender.settimeout(3)
    layer = TransactionLayer(t1=100, t2=400, auto_trying=False)
    return sender, layer, Pump(kam.uas, layer)


def test_kamailio_retransmits_message_we_absorb_and_our_200_matches(kam):
    sender, layer, p = _sender_and_uas(kam)
    try:
        m = _request(sender, b"MESSAGE", b"relay", b"z9hG4bKmsg%d" % _seq[0], b"status")
        sender.sendto(m.serialize(), kam.addr)
        p.run(1.0)                              # stay silent: Kamailio's timer E fires
        kinds = [e[0] for e in p.events]
        assert kinds.count(EV_REQUEST) == 1
        assert kinds.count(EV_ABSORBED) >= 2
        tx = [e[1] for e in p.events if e[0] == EV_REQUEST][0]
        assert tx.request.body == b"status"
        layer.send_response(tx, message.response(tx.request, 200, b"OK", to_tag=b"dev1"), p.now())
        p.flush()
        got = parse(sender.recv(65535))
        while got.status < 200:
            got = parse(sender.recv(65535))
        assert got.status == 200 and got.call_id() == m.call_id() and got.to_tag() == b"dev1"
        n = len(p.events)
        p.run(0.6)
        assert [e[0] for e in p.events[n:]] == []   # Kamailio stopped retransmitting
    finally:
        sender.close()


def test_kamailio_ack_matches_our_invite_server_transaction(kam):
    sender, layer, p = _sender_and_uas(kam)
    try:
        inv = _request(sender, b"INVITE", b"relay", b"z9hG4bKsinv%d" % _seq[0])
        sender.sendto(inv.serialize(), kam.addr)
        p.run(2, stop=lambda p: any(e[0] == EV_REQUEST for e in p.events))
        tx = [e[1] for e in p.events if e[0] == EV_REQUEST][0]
        branch = tx.request.via_branch()
        layer.send_response(tx, message.response(tx.request, 486, b"Busy Here", to_tag=b"dev2"),
                            p.now())
        assert tx.request is None and tx.wire      # released: only the bytes to resend stay
        p.flush()
        p.run(2, stop=lambda p: tx.state != COMPLETED)
        assert tx.state in (CONFIRMED, TERMINATED)
        acks = [m for m in p.received if m.method == b"ACK"]
        assert len(acks) >= 1 and acks[0].via_branch() == branch
        assert tx.retx_at is None          # our timer G stopped
    finally:
        sender.close()
