# RFC 3261 section 17 transactions, sans-IO (models: aioquic's get_timer/handle_timer,
# h11's events). Client and server, INVITE and non-INVITE, timers A B D E F G H I J K
# (Table 4, 17.1.1.2, 17.1.2.2, 17.2.1, 17.2.2) with T1/T2/T4 configurable.
#
#   layer = TransactionLayer(t1=500, t2=4000, t4=5000)
#   tx = layer.send_request(msg, now_ms, reliable=False, dest=addr)
#   events = layer.receive(msg, now_ms, reliable=False, addr=src)
#   layer.send_response(tx, resp, now_ms)
#   layer.get_timer() -> earliest deadline (ms) or None; events = layer.handle_timer(now_ms)
#   layer.datagrams_to_send() -> [(bytes, dest)]
#
# Events are (kind, tx, msg) tuples; kinds below. The 2xx to an INVITE ends the client
# transaction (17.1.1.2); later 2xx retransmissions arrive as EV_STRAY for the TU to ACK.
from micropython import const

from sipling.sip import message
from sipling.sip.error import SipError
from sipling.sip.txmatch import ack_for, cancel_target_key, client_key, key_2543, server_key

EV_RESPONSE = const(1)  # client tx: a response for the TU (1xx, or the first final response)
EV_REQUEST = const(2)   # server tx created: a new request for the TU
EV_ABSORBED = const(3)  # a retransmission (request, response or ACK) the transaction absorbed
EV_TIMEOUT = const(4)   # timer B/F (client: act as 408, 8.1.3.1) or H (no ACK) fired
EV_ACK = const(5)       # an ACK matching no transaction (the ACK for a 2xx): for the TU
EV_STRAY = const(6)     # a response matching no client transaction (17.1.3: to the core)
EV_DROPPED = const(7)   # unusable message (missing Via/CSeq ...); msg is the reason (str)
EV_NAMES = ("", "response", "request", "absorbed", "timeout", "ack", "stray", "dropped")

# States (17.1.1, 17.1.2, 17.2.1, 17.2.2)
CALLING = const(0)
TRYING = const(1)
PROCEEDING = const(2)
COMPLETED = const(3)
CONFIRMED = const(4)
TERMINATED = const(5)
STATE_NAMES = ("calling", "trying", "proceeding", "completed", "confirmed", "terminated")


class Transaction:
    """One transaction. `request` created it; `response` is the last response seen (client)
    or sent (server); both are released (None) once the transaction is Completed, when only
    the bytes to resend are kept (a parsed message costs kilobytes of heap); `status` keeps
    the last status code. `state` is one of the constants above; `dest` where datagrams go."""

    def __init__(self, server, request, reliable, dest):
        self.server = server
        self.method = request.method
        self.invite = request.method == b"INVITE"
        self.request = request
        self.status = 0
        self.reliable = reliable
        self.dest = dest
        self.state = TRYING
        self.response = None
        self.wire = None        # bytes retransmitted by timer A/E (request) or G (response)
        self.ack = None         # client INVITE: bytes of the ACK for a non-2xx (17.1.1.3)
        self.retx_at = None     # timer A, E or G deadline
        self.retx_ivl = 0       # its current interval
        self.end_at = None      # timer B, F or H deadline (transaction failure)
        self.wait_at = None     # timer D, K, I or J deadline (quiet end)
        self.keys = []          # index keys in the layer's tables

    def deadline(self):
        d = None
        for t in (self.retx_at, self.end_at, self.wait_at):
            if t is not None and (d is None or t < d):
                d = t
        return d

    def __repr__(self):
        return "<%s %s tx %s>" % ("server" if self.server else "client",
                                  self.method.decode(), STATE_NAMES[self.state])

    def release(self):
        self.request = self.response = None
        if not self.server:
            self.wire = None


class TransactionLayer:
    def __init__(self, t1=500, t2=4000, t4=5000, td=32000, auto_trying=True, max_server=32,
                 timer_c=180000):
        self.t1 = t1
        self.t2 = t2
        self.t4 = t4
        self.td = td                    # Timer D: > 32 s for unreliable transports
        self.auto_trying = auto_trying  # 17.2.1: send 100 Trying for a new INVITE at once
        self.max_server = max_server    # bound on live server transactions (heap)
        # Local policy beyond section 17, which leaves these to the TU: an INVITE client
        # transaction in Proceeding and an unanswered INVITE server transaction end after
        # timer_c (16.6 item 11's Timer C, > 3 min; None = wait forever as 17.1.1.2 says);
        # an unanswered non-INVITE server transaction ends after 64*T1, when the client's
        # Timer F has given up. Either reports EV_TIMEOUT so the TU can clean up.
        self.timer_c = timer_c
        self._client = {}
        self._server = {}
        self._out = []
        self._nserver = 0
        self.dropped = 0

    # -- transport side --------------------------------------------------------------
    def datagrams_to_send(self):
        out = self._out
        self._out = []
        return out

    def _send(self, tx, data):
        self._out.append((data, tx.dest))

    def send_stateless(self, msg, dest=None):
        """Queue a message outside any transaction: the TU's ACK for a 2xx (17.1.1.3) or
        its 2xx retransmissions (13.3.1.4), a stateless reply. Bytes or a Message."""
        self._out.append((msg if isinstance(msg, bytes) else msg.serialize(), dest))

    def transactions(self):
        return list(self._client.values()) + [t for t in self._server.values()]

    # -- client transactions (17.1) ------------------------------------------------------
    def send_request(self, msg, now_ms, reliable=False, dest=None):
        """Start a client transaction for `msg` (never ACK: an ACK for a 2xx is sent by the
        TU directly, 17.1.1.3). Queues the first transmission and arms A+B or E+F."""
        if msg.method == b"ACK":
            raise ValueError("ACK is not sent through a client transaction")
        key = client_key(msg)
        if key is None:
            raise ValueError("request without a Via branch")
        if key in self._client:
            raise ValueError("branch already in use")
        tx = Transaction(False, msg, reliable, dest)
        tx.wire = msg.serialize()
        tx.state = CALLING if tx.invite else TRYING
        tx.end_at = now_ms + 64 * self.t1          # Timer B / Timer F
        if not reliable:
            tx.retx_ivl = self.t1                  # Timer A / Timer E start at T1
            tx.retx_at = now_ms + self.t1
        tx.keys = [key]
        self._client[key] = tx
        self._send(tx, tx.wire)
        return tx

    def _client_response(self, tx, resp, now_ms):
        code = resp.status
        st = tx.state
        if st == COMPLETED:
            if code >= 200 and tx.invite:
                self._send(tx, tx.ack)  # 17.1.1.2: resend the ACK for each retransmission
            return [(EV_ABSORBED, tx, resp)]
        if st == TERMINATED:
            return [(EV_STRAY, None, resp)]
        tx.response = resp
        tx.status = code
        if code < 200:
            if tx.invite:
                tx.retx_at = None      # 17.1.1.2: no more retransmissions in Proceeding,
                tx.end_at = None       # and Timer B only runs in Calling
                if self.timer_c is not None:
                    tx.end_at = now_ms + self.timer_c
            tx.state = PROCEEDING      # non-INVITE: E keeps running (T2 from its next run)
            return [(EV_RESPONSE, tx, resp)]
        tx.retx_at = None
        tx.end_at = None
        if tx.invite and code < 300:
            self._terminate(tx)        # 17.1.1.2: 2xx ends the transaction, TU sends ACK
            return [(EV_RESPONSE, tx, resp)]
        if tx.invite:
            tx.ack = ack_for(tx.request, resp).serialize()
            self._send(tx, tx.ack)
            wait = 0 if tx.reliable else self.td            # Timer D
        else:
            wait = 0 if tx.reliable else self.t4            # Timer K
        tx.state = COMPLETED
        self._wait(tx, now_ms, wait)
        return [(EV_RESPONSE, tx, resp)]

    # -- server transactions (17.2) ------------------------------------------------------
    def _server_lookup(self, msg):
        k = server_key(msg)
        if k is None:
            k = key_2543(msg)
        return k, self._server.get(k)

    def _server_request(self, msg, now_ms, reliable, addr):
        key, tx = self._server_lookup(msg)
        if tx is not None:
            return self._server_retransmission(tx, msg, now_ms)
        if msg.method == b"ACK":
            return [(EV_ACK, None, msg)]    # ACK for a 2xx: no transaction, to the TU
        if self._nserver >= self.max_server:
            self.dropped += 1
            return [(EV_DROPPED, None, "server transaction table full (%d)" % self.max_server)]
        tx = Transaction(True, msg, reliable, addr)
        tx.keys = [key]
        self._server[key] = tx
        self._nserver += 1
        if tx.invite:
            tx.state = PROCEEDING
            if self.timer_c is not None:
                tx.end_at = now_ms + self.timer_c
            if self.auto_trying:
                ts = msg.header_lines(b"timestamp")   # 8.2.6.1: copy Timestamp into the 100
                hs = [(b"Timestamp", ts[0])] if ts else ()
                self._respond(tx, message.response(msg, 100, b"Trying", hs))
        else:
            tx.state = TRYING
            tx.end_at = now_ms + 64 * self.t1
        return [(EV_REQUEST, tx, msg)]

    def _server_retransmission(self, tx, msg, now_ms):
        st = tx.state
        if msg.method == b"ACK":
            if tx.invite and st == COMPLETED:
                tx.state = CONFIRMED       # 17.2.1: stop G and H, start I
                tx.retx_at = None
                tx.end_at = None
                self._wait(tx, now_ms, 0 if tx.reliable else self.t4)
            return [(EV_ABSORBED, tx, msg)]
        if tx.wire is not None and st in (PROCEEDING, COMPLETED):
            self._send(tx, tx.wire)        # 17.2.1 / 17.2.2: resend the last response
        return [(EV_ABSORBED, tx, msg)]

    def _respond(self, tx, resp):
        tx.response = resp
        tx.status = resp.status
        tx.wire = resp.serialize()
        self._send(tx, tx.wire)

    def send_response(self, tx, resp, now_ms):
        """Send `resp` on server transaction `tx` (the TU's answer to EV_REQUEST)."""
        if not tx.server:
            raise ValueError("not a server transaction")
        if tx.state not in (TRYING, PROCEEDING):
            raise ValueError("server transaction is %s" % STATE_NAMES[tx.state])
        code = resp.status
        self._respond(tx, resp)
        if code < 200:
            tx.state = PROCEEDING
            return
        tx.end_at = None
        if tx.invite:
            if code < 300:
                self._terminate(tx)        # 17.2.1: 2xx: the TU retransmits it, not us
                return
            tx.state = COMPLETED
            tx.end_at = now_ms + 64 * self.t1             # Timer H
            if not tx.reliable:
                tx.retx_ivl = self.t1                     # Timer G
                tx.retx_at = now_ms + self.t1
            if tx.keys[0][0] == b"2543":                  # the ACK carries our To tag
                k = key_2543(tx.request, resp.to_tag())
                tx.keys.append(k)
                self._server[k] = tx
            tx.release()
            return
        tx.state = COMPLETED
        self._wait(tx, now_ms, 0 if tx.reliable else 64 * self.t1)   # Timer J

    def find_cancelled(self, cancel):
        """The INVITE server transaction a CANCEL refers to (RFC 3261 9.2), or None."""
        try:
            return self._server.get(cancel_target_key(cancel))
        except SipError:
            return None

    # -- input -------------------------------------------------------------------------
    def receive(self, msg, now_ms, reliable=False, addr=None):
        """Feed one parsed message from the transport; returns a list of events."""
        try:
            if msg.is_request:
                return self._server_request(msg, now_ms, reliable, addr)
            key = client_key(msg)
        except SipError as e:
            self.dropped += 1
            return [(EV_DROPPED, None, e.reason)]
        tx = self._client.get(key) if key is not None else None
        if tx is None:
            return [(EV_STRAY, None, msg)]
        return self._client_response(tx, msg, now_ms)

    # -- timers ------------------------------------------------------------------------
    def get_timer(self):
        d = None
        for tx in self.transactions():
            t = tx.deadline()
            if t is not None and (d is None or t < d):
                d = t
        return d

    def handle_timer(self, now_ms):
        ev = []
        for tx in self.transactions():
            if tx.end_at is not None and tx.end_at <= now_ms:
                self._terminate(tx)        # B, F or H: transaction failure
                ev.append((EV_TIMEOUT, tx, None))
                continue
            if tx.wait_at is not None and tx.wait_at <= now_ms:
                self._terminate(tx)        # D, K, I or J
                continue
            if tx.retx_at is not None and tx.retx_at <= now_ms:
                self._send(tx, tx.wire)    # A, E or G
                if not tx.invite and tx.state == PROCEEDING:
                    tx.retx_ivl = self.t2  # 17.1.2.2: in Proceeding, E fires every T2
                elif tx.invite and not tx.server:
                    tx.retx_ivl *= 2       # 17.1.1.2: A doubles without a cap
                else:
                    tx.retx_ivl = min(2 * tx.retx_ivl, self.t2)  # E (Trying), G
                tx.retx_at = now_ms + tx.retx_ivl
        return ev

    def _wait(self, tx, now_ms, ms):
        tx.release()
        if ms == 0:
            self._terminate(tx)
        else:
            tx.wait_at = now_ms + ms

    def _terminate(self, tx):
        tx.release()
        if tx.server and tx.state != TERMINATED:
            self._nserver -= 1
        tx.state = TERMINATED
        tx.retx_at = tx.end_at = tx.wait_at = None
        table = self._server if tx.server else self._client
        for k in tx.keys:
            if table.get(k) is tx:
                del table[k]
