# Client side of the device UA (sans-IO): request building (RFC 3261 8.1.1) on top of the
# section 17 transaction layer (sipling.sip.transaction), which retransmits requests (Timer
# E), ends them (Timer F, reported as a timeout), absorbs retransmitted requests and resends
# the last response (17.2.2). Callbacks get (response, now) or (None, now) on timeout.
# Outgoing datagrams: datagrams_to_send() -> [(bytes, (ip, port))].
import binascii

from micropython import const

from . import message
from . import transaction as T

USER_AGENT = b"sipling/0.1"
KEEP = const(4)         # answered requests kept to absorb their retransmissions (Timer J)
KEEP_CLIENT = const(2)  # our finished requests kept to absorb response retransmissions (K)


class Layer(T.TransactionLayer):
    """The section 17 layer with the device's heap bound: at most KEEP (server) and
    KEEP_CLIENT (client) transactions linger in Completed, the oldest ends first. Ending
    one early only loses the absorption of a late retransmission: a late response is then
    a stray the UA drops (17.1.3), a late request a new one. A non-INVITE client
    transaction needs only the bytes it retransmits, not the parsed request."""

    def send_request(self, msg, now_ms, reliable=False, dest=None):
        tx = T.TransactionLayer.send_request(self, msg, now_ms, reliable, dest)
        if not tx.invite:
            tx.request = None  # only an INVITE needs it (the ACK for a non-2xx, 17.1.1.3)
        return tx

    def _wait(self, tx, now_ms, ms):
        T.TransactionLayer._wait(self, tx, now_ms, ms)
        if tx.state != T.COMPLETED:
            return
        keep = KEEP if tx.server else KEEP_CLIENT
        # only those ending quietly on a wait timer (J, K): a Completed INVITE server
        # transaction waits for its ACK on Timers G/H instead and has no wait_at (issue 10:
        # comparing None here broke every later answer)
        done = [t for t in (self._server if tx.server else self._client).values()
                if t.state == T.COMPLETED and t.wait_at is not None]
        while len(done) > keep:
            old = done[0]
            for t in done:
                if t.wait_at < old.wait_at:
                    old = t
            done.remove(old)
            self._terminate(old)

    def cancel(self, tx):
        """Stop a client transaction now (no more retransmissions, no timeout)."""
        self._terminate(tx)


class Client:
    def __init__(self, cfg, rand, t1=500):
        self.rand = rand
        self.t1 = t1
        p = cfg["proxy"]
        self.proxy = (p["host"], p["port"])
        self.domain = p["domain"].encode()
        ident = cfg["identity"]
        self.aor_s = ident["aor"]
        self.aor = ident["aor"].encode()
        self.display = ident.get("display", "")
        loc = cfg["local"]
        self.local_ip = loc["host"] if loc["host"] != "0.0.0.0" else "127.0.0.1"
        self.port_s = loc["port_s"]
        self.port_c = loc["port_c"]
        self.tag = self._hex(6)
        # the UA answers every request at once (so no automatic 100 Trying, 17.2.1), and a
        # server transaction is in Trying only within one receive(); max_server bounds
        # INVITE ones (405, Timer G until the ACK) and a burst all the same
        self.layer = Layer(t1=t1, auto_trying=False, max_server=2 * KEEP)
        self.pending = {}   # client Transaction -> callback(resp, now)

    def _hex(self, n):
        return binascii.hexlify(self.rand(n))

    def new_call_id(self):
        return self._hex(10) + b"@" + self.local_ip.encode()

    def tag_for(self, req):
        # one tag per device lifetime is enough for out-of-dialog responses (RFC 3261 8.2.6.2)
        return self.tag

    def contact_uri(self):
        user = self.aor[self.aor.find(b":") + 1:].split(b"@")[0]
        return b"sip:%s@%s:%d" % (user, self.local_ip.encode(), self.sa.contact_port(self.port_s))

    def contact(self):
        return b"<" + self.contact_uri() + b">"

    def registrar_uri(self):
        return b"sip:" + self.domain

    def build(self, method, ruri, to_uri, call_id, cseq, hdrs, body=b"", first_hop=True):
        """A request sent to the first-hop proxy, with the agreement's headers added."""
        branch = b"z9hG4bK" + self._hex(8)
        sent_by = b"%s:%d" % (self.local_ip.encode(), self.sa.contact_port(self.port_s))
        frm = b"<" + self.aor + b">;tag=" + self.tag
        if self.display:
            frm = b'"' + self.display.encode() + b'" ' + frm
        h = [(b"Via", b"SIP/2.0/UDP " + sent_by + b";rport;branch=" + branch),
             (b"Max-Forwards", b"70"),
             (b"From", frm),
             (b"To", b"<" + to_uri + b">"),
             (b"Call-ID", call_id),
             (b"CSeq", b"%d %s" % (cseq, method))]
        h.extend(self.sa.headers(method, ruri, body))
        h.extend(hdrs)
        h.append((b"User-Agent", USER_AGENT))
        return message.request(method, ruri, h, body)

    def send(self, data, dst):
        """A datagram outside any transaction (a stateless 400 to an unparseable request)."""
        self.layer.send_stateless(data, dst)

    def datagrams_to_send(self):
        return self.layer.datagrams_to_send()

    def start_tx(self, req, now, cb):
        """A non-INVITE client transaction to the proxy (17.1.2); cb(resp|None, now).
        Returns the transaction."""
        tx = self.layer.send_request(req, now, False, self.proxy)
        self.pending[tx] = cb
        return tx

    def in_flight(self):
        return len(self.pending)

    def _events(self, evs, now):
        for kind, tx, msg in evs:
            if kind == T.EV_RESPONSE or kind == T.EV_TIMEOUT:
                cb = self.pending.get(tx)
                if cb is None:
                    continue
                if msg is None or msg.status >= 200:
                    del self.pending[tx]
                cb(msg, now)
            # EV_ABSORBED (a retransmitted response), EV_STRAY (no match, 17.1.3) and
            # EV_DROPPED (no usable Via/CSeq) need nothing from the UA

    def cancel_all(self, keep_messages=False):
        for tx in list(self.pending):
            if not (keep_messages and tx.method == b"MESSAGE"):
                del self.pending[tx]
                self.layer.cancel(tx)


def _auth_params(value):
    # our own Authorization value -> {name: value} (we built it: name=value, name="value")
    out = {}
    v = value[7:] if value[:7].lower() == b"digest " else value
    for part in v.split(b", "):
        k, _, x = part.partition(b"=")
        out[k.strip().lower()] = x.strip().strip(b'"')
    return out


class SecAgree:
    """Glue between the UA and the RFC 3329 client (sipling.secagree.client) plus the digest
    credentials (sipling.sip.digest) the digest mechanism needs. hooks: on_agreed(agreement)
    installs protection (ESP SAs for ipsec), on_drop(agreement) removes it."""

    def __init__(self, cfg, rand, log, on_agreed=None, on_drop=None):
        from sipling.secagree import client, policy
        self._client_mod = client
        self.client = client.SecAgreeClient(policy.from_config(cfg), rand)
        ident = cfg["identity"]
        self.user = ident["auth_user"].encode()
        self._pw = ident["password"].encode()
        self.rand = rand
        self.log = log
        self.on_agreed = on_agreed
        self.on_drop = on_drop
        self.ag = None
        self.auth = None
        self.now = 0
        self.man = cfg.get("ipsec_man")

    def reset(self):
        if self.ag is not None and self.on_drop:
            self.on_drop(self.ag)
        self.client.reset()
        self.ag = None
        self.auth = None

    def offer_text(self):
        return ", ".join(m.decode() for m in self.client.policy.offered())

    def mechanism(self):
        return self.ag.mechanism.decode() if self.ag is not None else None

    def contact_port(self, port_s):
        # Via sent-by and Contact carry our protected port-s (DESIGN.md 4); for ipsec-man
        # that is the provisioned one
        if self.ag is not None and self.ag.mechanism == b"ipsec-man" and self.man is not None:
            return self.man["port_us"]
        return port_s

    def protected(self):
        return self.client.protected()

    def refresh(self, now):
        self._events(self.client.refresh(now))

    def headers(self, method, ruri, body):
        if self.client.state == self._client_mod.IDLE:
            self._events(self.client.start(self.now))
        h = list(self.client.request_headers())
        if self.auth is None or self.ag is None:
            return h
        if self.ag.mechanism != b"digest" and method != b"REGISTER":
            return h  # under ipsec only the REGISTER answers the challenge (TS 24.229 5.1.1.5)
        creds = self.auth.credentials(method, ruri, body)
        if self.ag.mechanism == b"digest" and creds:
            # RFC 3329 2.4: d-ver in Security-Verify protects the Security-Server list
            p = _auth_params(creds[0][1])
            dv = self.ag.d_ver(self.user, p.get(b"realm"), self._pw, p.get(b"nonce"), method, ruri,
                               p.get(b"cnonce"), p.get(b"nc"), body, p.get(b"algorithm"), p.get(b"qop"))
            h = [x for x in h if x[0] != b"Security-Verify" and x[0] not in (b"Require", b"Proxy-Require", b"Supported")]
            h = self.ag.verify_headers(dv) + [x for x in h if x[0] == b"Security-Client"]
        return h + creds

    def _events(self, evs):
        verdict = None
        for kind, data in evs:
            if kind == "log":
                self.log("info", data)
            elif kind == "alarm":
                self.log("error", data)
            elif kind == "agreed":
                self.ag = data
                if self.on_agreed:
                    self.on_agreed(data)
                verdict = ("retry", "agreed " + data.describe())
            elif kind == "drop":
                if self.on_drop:
                    self.on_drop(data)
                if data is self.ag:
                    self.ag = None
            elif kind in ("abort", "failed", "tamper"):
                verdict = ("tamper" if kind == "tamper" else "abort", data)
            elif kind == "rechallenge":
                verdict = ("rechallenge", "re-challenged")
        return verdict

    def _challenge(self, resp, why):
        from sipling.sip import digest
        if self.auth is None:
            self.auth = digest.DigestAuth(self.user, self._pw, self.rand, self.ag.d_alg, self.ag.d_qop)
        for st, name in ((401, "WWW-Authenticate"), (407, "Proxy-Authenticate")):
            vals = resp.header_lines(name)
            if vals:
                r = self.auth.on_challenge(st, vals)
                if r == digest.AUTH_RETRY:
                    return "retry", why
                return "abort", self.auth.reason
        return "abort", "%s without a digest challenge" % why

    def _answers(self, resp):
        # digest: the challenge is the mechanism. ipsec-3gpp/ipsec-man agreed from a 401/407
        # (IMS, 3GPP TS 24.229 5.1.1.5; RFC 3329 2.3.1 lets a 401 start the agreement): the
        # protected REGISTER answers the Digest challenge too when we have a password
        if self.ag is None:
            return False
        if self.ag.mechanism == b"digest":
            return True
        return resp.status in (401, 407) and bool(self._pw) and self._client_mod._has_digest_challenge(resp)

    def on_response(self, resp, now):
        """('retry', why) resend the request now; ('abort'|'tamper', why) start over later."""
        self.now = now
        v = self._events(self.client.on_response(resp.status, resp, now))
        if v is None:
            if resp.status in (401, 407) and self._answers(resp):
                return self._challenge(resp, "%d" % resp.status)
            return "abort", "%d not handled by the agreement" % resp.status
        if v[0] in ("retry", "rechallenge") and self._answers(resp):
            if self.ag.mechanism != b"digest":
                self.auth = None  # a new agreement, a new challenge: no state from the last
            return self._challenge(resp, v[1])
        return v

    def on_success(self, resp, now):
        """A 2xx: None when it confirms the agreement, else ('abort'|'failed', why) (a 2xx
        to the plain offer means the server ignored sec-agree, RFC 3329 2.3.1)."""
        self.now = now
        v = self._events(self.client.on_response(resp.status, resp, now))
        if self.auth is not None:
            self.auth.on_success()
        return v
