# The device's user agent (sans-IO): registration lifecycle through sec-agree (RFC 3261 10,
# RFC 3329), keep-alive, MESSAGE/OPTIONS server side (RFC 3428, RFC 3261 11) and outgoing
# MESSAGEs (command replies, events). Times are injected (now_ms); bytes in, bytes out:
#   receive(data, src, protected, now)  -> feed one datagram; src = (ip, port)
#   handle_timer(now); get_timer()      -> retransmissions, refresh, keep-alive, backoff
#   datagrams_to_send()                 -> [(bytes, (ip, port))]; the transport decides how
#                                          (plain UDP from port-c, or ESP on the agreed SAs)
# The sec-agree client (agreement object) supplies offer/verify/credential headers.
from micropython import const

from . import message, parser
from . import transaction as T
from . import uac
from ..control.owners import addr_spec

IDLE = const(0)
REGISTERING = const(1)
REGISTERED = const(2)
BACKOFF = const(3)
UNREGISTERING = const(4)
STOPPED = const(5)
NAMES = ("idle", "registering", "registered", "backoff", "unregistering", "stopped")

_MAX_ROUNDS = const(4)        # sec-agree / digest retries within one registration attempt
_BACKOFF_FIRST_MS = const(1000)
_BACKOFF_MAX_MS = const(300000)
_MIN_REFRESH_MS = const(5000)
_KEEPALIVE_GIVEUP_MS = const(8000)  # Timer E sent it at 0, 0.5, 1.5, 3.5 and 7.5 s
MAX_TX = const(12)            # client transactions in flight (replies, events, register)
ALLOW = b"MESSAGE, OPTIONS"
_ALLOW_HDRS = ((b"Allow", ALLOW),)
_OPTIONS_HDRS = ((b"Allow", ALLOW), (b"Accept", b"text/plain, application/json"), (b"Supported", b"sec-agree"))


def _text(b):
    # peer bytes for a log line: printable ASCII, anything else escaped (never raises)
    return "".join(chr(c) if 32 <= c < 127 else "\\x%02x" % c for c in (b or b""))


class UA(uac.Client):
    """cfg: validated config dict; agreement: uac.SecAgree (RFC 3329 client + digest glue);
    control: object with authorize(msg, trusted) -> (ok, who) and run(msg) -> (body, ctype,
    summary); rand(n) -> n random bytes; log(level, msg)."""

    def __init__(self, cfg, agreement, control, rand, log, t1=500, keepalive_ms=30000):
        uac.Client.__init__(self, cfg, rand, t1)
        self.sa = agreement
        self.control = control
        self.log = log
        self.state = IDLE
        self.expires = cfg["register"]["expires"]
        self.keepalive_ms = keepalive_ms
        # RFC 3329 digest protects only our own requests, so commands under it need an opt-in
        self.digest_commands = bool((cfg.get("control") or {}).get("digest_commands"))
        self.failures = 0
        self.rounds = 0
        self.reg_call_id = None
        self.reg_cseq = 0
        self.t_refresh = None
        self.t_keepalive = None
        self.t_backoff = None
        self.on_state = None      # callback(state_name, detail)
        self.counters = {"ignored_unprotected": 0, "forbidden": 0, "commands": 0,
                         "retransmissions_absorbed": 0, "bad_requests": 0, "registrations": 0,
                         "refused_digest_only": 0}
        self.detail = ""

    # --- status -----------------------------------------------------------------------
    def _set(self, state, detail):
        self.state = state
        self.detail = detail
        if self.on_state:
            self.on_state(NAMES[state], detail)

    def status(self):
        """Short text for the console and the status command."""
        mech = self.sa.mechanism() if self.state == REGISTERED else None
        return "%s%s%s" % (NAMES[self.state], (" via " + mech) if mech else "",
                           (" (" + self.detail + ")") if self.detail and self.state != REGISTERED else "")

    def registered(self):
        return self.state == REGISTERED

    # --- registration (RFC 3261 10.2) ----------------------------------------------------
    def start(self, now):
        self.sa.reset()
        self.sa.now = now
        self.reg_call_id = self.new_call_id()
        self.rounds = 0
        self._set(REGISTERING, "offering " + self.sa.offer_text())
        self._send_register(now, self.expires)

    def _send_register(self, now, expires):
        self.reg_cseq += 1
        hdrs = [(b"Contact", self.contact() + (b";expires=%d" % expires)),
                (b"Expires", b"%d" % expires)]
        req = self.build(b"REGISTER", self.registrar_uri(), self.aor, self.reg_call_id,
                         self.reg_cseq, hdrs, first_hop=True)
        self.start_tx(req, now, self._on_register)

    def _on_register(self, resp, now):
        try:
            self._register_answered(resp, now)
        except Exception as e:
            # one malformed response (bad bytes in Security-Server, SPIs the SA database
            # refuses, ...) is a failed attempt with backoff, never a REGISTERING state
            # without a timer
            self.log("error", "response to REGISTER not usable (%s: %s)" % (type(e).__name__, e))
            if self.state == UNREGISTERING:
                self.sa.reset()
                self._set(STOPPED, "de-register answer not usable")
                return
            self._fail(now, "response not usable: %s" % type(e).__name__)

    def _register_answered(self, resp, now):
        st = resp.status if resp is not None else 408
        if st < 200:
            return
        stopping = self.state == UNREGISTERING
        if 200 <= st < 300:
            refused = self.sa.on_success(resp, now)
            if stopping:
                self._set(STOPPED, "de-registered")
                return
            if refused is not None or not self.sa.protected():
                # RFC 3329 2.3.1 / DESIGN.md 4 rule 6: a 2xx counts only under an agreement;
                # a 2xx to the plain offer means the server ignored sec-agree
                why = "2xx without security agreement: refusing to register unprotected"
                self.log("error", why + (" (%s)" % refused[1] if refused is not None else ""))
                return self._fail(now, why)
            exp = self._granted(resp)
            self.failures = 0
            self.counters["registrations"] += 1
            self._set(REGISTERED, "")
            self.log("info", "registered as %s at %s:%d via %s, expires %d s"
                     % (self.aor_s, self.proxy[0], self.proxy[1], self.sa.mechanism(), exp))
            if self.sa.mechanism() == "digest":
                self.log("warn", "digest protects only the board's own requests, not the proxy's requests to it: "
                         "commands are %s" % ("ACCEPTED (control.digest_commands is on)" if self.digest_commands
                                              else "refused (IPsec needed)"))
            # refresh before expiry: at 80% of the granted time, at least 5 s ahead
            lead = exp * 200
            if lead < _MIN_REFRESH_MS:
                lead = _MIN_REFRESH_MS
            self.t_refresh = now + max(exp * 1000 - lead, 1000)
            self.t_keepalive = now + self.keepalive_ms if self.keepalive_ms else None
            return
        if stopping:
            self._set(STOPPED, "de-register answered %d" % st)
            return
        if st == 423:  # RFC 3261 10.2.8: Interval Too Brief
            me = resp.get("Min-Expires")
            try:
                self.expires = int(me)
            except (TypeError, ValueError):
                return self._fail(now, "423 without a usable Min-Expires")
            return self._retry_register(now, "423: expires raised to %d" % self.expires)
        if st in (401, 407, 421, 494):
            verdict, why = self.sa.on_response(resp, now)
            if verdict == "retry" and self.rounds < _MAX_ROUNDS:
                self.rounds += 1
                self.log("info", "register %d: %s" % (st, why))
                return self._retry_register(now, why)
            if verdict == "tamper":
                self.log("error", "ALARM: %d to a protected REGISTER: %s; renegotiating" % (st, why))
            return self._fail(now, "%d %s: %s" % (st, _text(resp.reason), why))
        if resp is None:
            return self._fail(now, "no answer from %s:%d" % self.proxy)
        return self._fail(now, "%d %s" % (st, _text(resp.reason)))

    def _retry_register(self, now, why):
        self.detail = why
        self._send_register(now, self.expires)

    def _granted(self, resp):
        # RFC 3261 10.2.4: our binding's expires param, else Expires, else what we asked
        mine = self.contact_uri()
        for v in resp.get_all("Contact") or ():
            for c in v.split(b","):
                if mine in c:
                    for p in c.split(b";")[1:]:
                        k, _, val = p.partition(b"=")
                        if k.strip().lower() == b"expires":
                            try:
                                return int(val.strip())
                            except ValueError:
                                pass
        try:
            return int(resp.get("Expires"))
        except (TypeError, ValueError):
            return self.expires

    def _fail(self, now, why):
        # bounded exponential backoff with jitter (RFC 5626 4.5 style): d/2 + rand(d/2)
        self.sa.reset()
        self.cancel_all(keep_messages=True)
        self.failures += 1
        d = _BACKOFF_FIRST_MS << min(self.failures - 1, 9)
        if d > _BACKOFF_MAX_MS:
            d = _BACKOFF_MAX_MS
        r = self.rand(2)
        delay = d // 2 + ((r[0] << 8 | r[1]) * (d // 2)) // 65536
        self.t_backoff = now + delay
        self.t_refresh = self.t_keepalive = None
        self._set(BACKOFF, why)
        self.log("warn", "registration failed (%s); retry %d in %d ms" % (why, self.failures, delay))

    def _tampered(self, resp, now, what):
        # DESIGN.md 4 rule 5 / RFC 3329 2.3.1: a 494 to any protected request means the
        # Security-Server list was tampered with: alarm, drop the association and
        # negotiate afresh through the same bounded backoff as a 494 to a REGISTER
        try:
            why = self.sa.on_response(resp, now)[1]
        except Exception as e:
            why = "%s: %s" % (type(e).__name__, e)
        self.log("error", "ALARM: 494 to a protected %s: %s; renegotiating" % (what, why))
        self._fail(now, "494 to a protected %s" % what)

    def lost(self, now, why):
        """The proxy no longer knows us (restart, unexpected 401/494, no answer): start over."""
        if self.state in (REGISTERED, REGISTERING):
            self.log("warn", "association with %s:%d lost (%s); re-registering" % (self.proxy[0], self.proxy[1], why))
            self.sa.reset()
            self.cancel_all(keep_messages=True)
            self.t_refresh = self.t_keepalive = None
            self.start(now)

    def stop(self, now):
        """Orderly shutdown: de-register (Expires: 0, RFC 3261 10.2.2); STOPPED when done."""
        self.t_refresh = self.t_keepalive = self.t_backoff = None
        if self.state != REGISTERED:
            self.cancel_all()
            self._set(STOPPED, "")
            return
        self._set(UNREGISTERING, "")
        self.cancel_all()
        self._send_register(now, 0)

    # --- keep-alive: OPTIONS to our own AOR, under the agreement ---------------------------
    # A proxy answers an OPTIONS for its own domain itself, so that would not notice a
    # registrar that lost our binding (a Kamailio restart). Our own AOR makes the registrar
    # look the binding up and route the request back by its Path, through the edge and our
    # inbound SA, to our own OPTIONS server (RFC 3261 11): a 2xx proves the whole loop, a
    # 404/480 says the binding or the edge's association is gone. An unanswered one gives up
    # after _KEEPALIVE_GIVEUP_MS instead of Timer F's 32 s, so with the default 30 s
    # interval a lost edge is noticed within 38 s.
    def _keepalive(self, now):
        req = self.build(b"OPTIONS", self.aor, self.aor, self.new_call_id(), 1, [])
        tx = self.start_tx(req, now, self._on_keepalive)
        tx.end_at = now + _KEEPALIVE_GIVEUP_MS

    def _on_keepalive(self, resp, now):
        if self.state != REGISTERED or (resp is not None and resp.status < 200):
            return
        if resp is None:
            return self.lost(now, "keep-alive unanswered")
        if resp.status == 494 and self.sa.protected():
            return self._tampered(resp, now, "OPTIONS (keep-alive)")
        if resp.status >= 300:
            return self.lost(now, "keep-alive answered %d%s" % (
                resp.status, " (the registrar lost our binding)" if resp.status in (404, 480) else ""))
        self.t_keepalive = now + self.keepalive_ms

    # --- timers ---------------------------------------------------------------------------
    def get_timer(self):
        ts = [t for t in (self.t_refresh, self.t_keepalive, self.t_backoff, self.layer.get_timer()) if t is not None]
        return min(ts) if ts else None

    def handle_timer(self, now):
        self._events(self.layer.handle_timer(now), now)  # Timers E, F, J, K
        if self.t_backoff is not None and now >= self.t_backoff:
            self.t_backoff = None
            self.start(now)
        if self.t_refresh is not None and now >= self.t_refresh:
            self.t_refresh = None
            if self.state == REGISTERED:
                self.rounds = 0
                self.sa.refresh(now)
                self._send_register(now, self.expires)
        if self.t_keepalive is not None and now >= self.t_keepalive:
            self.t_keepalive = None
            if self.state == REGISTERED:
                self._keepalive(now)

    # --- incoming ---------------------------------------------------------------------------
    def receive(self, data, src, protected, now):
        """One datagram from src=(ip, port). protected: it came through the agreed protection
        (ESP on our SAs; for digest, from the first-hop proxy's address)."""
        if data[:4] == b"SIP/":
            if self.sa.protected():
                if not protected:
                    # after the agreement even responses come only through it (RFC 3329 2.3.1)
                    self.counters["ignored_unprotected"] += 1
                    return
            elif src[0] != self.proxy[0]:
                # before it, answers to our offer come only from the configured proxy
                self.counters["ignored_unprotected"] += 1
                self.log("warn", "ignored response from %s:%d (not the proxy %s)" % (src[0], src[1], self.proxy[0]))
                return
            msg, _ = parser.parse_or_reply(data)
            if msg is not None:
                self._events(self.layer.receive(msg, now, False, src), now)
            return
        trusted = (protected and self.state in (REGISTERED, UNREGISTERING) and src == self.proxy
                   and self.sa.protected())
        if not trusted:
            # RFC 3329 2.3.1: after agreement, only protected traffic counts; before it we
            # have no one to trust either.
            self.counters["ignored_unprotected"] += 1
            self.log("warn", "ignored unprotected request from %s:%d (%s)" % (src[0], src[1], data[:12]))
            return
        msg, reply = parser.parse_or_reply(data)
        if msg is None:
            self.counters["bad_requests"] += 1
            if reply:
                self.send(reply, src)
            return
        self._request(msg, src, now)

    def _request(self, req, src, now):
        # the transaction layer absorbs a retransmission and resends our answer (17.2.2)
        for kind, tx, x in self.layer.receive(req, now, False, src):
            if kind == T.EV_REQUEST:
                self._serve(tx, req, now)
            elif kind == T.EV_ABSORBED and req.method != b"ACK":  # the ACK for our 405 ends G
                self.counters["retransmissions_absorbed"] += 1
            elif kind == T.EV_DROPPED:  # no usable Via/CSeq, or the table is full
                self.counters["bad_requests"] += 1
                self.log("warn", "request dropped: %s" % x)

    def _serve(self, tx, req, now):
        m = req.method
        if m == b"MESSAGE":
            digest_only = self.sa.mechanism() == "digest"
            if digest_only and not self.digest_commands:
                self.counters["refused_digest_only"] += 1
                self.log("warn", "403 to a MESSAGE: commands are refused under a digest-only agreement "
                         "(the proxy's requests to us are not authenticated; control.digest_commands)")
                return self._answer(tx, req, now, 403, b"Forbidden (commands need IPsec)")
            # P-Asserted-Identity counts only through IPsec from the edge (RFC 3325 9.1), or
            # under digest when the owner opted in to commands there
            ok, who = self.control.authorize(req, True)
            if not ok:
                self.counters["forbidden"] += 1
                self.log("warn", "403 to %s: not an owner (MESSAGE refused)" % who)
                return self._answer(tx, req, now, 403, b"Forbidden")
            self._answer(tx, req, now, 200, b"OK")
            body, ctype, summary = self.control.run(req)
            self.counters["commands"] += 1
            self.log("info", "command from %s: %s" % (who, summary))
            to = addr_spec(req.get("From") or b"")
            self.send_message(to, body, ctype, now)
            return
        if m == b"OPTIONS":  # RFC 3261 11.2
            return self._answer(tx, req, now, 200, b"OK", _OPTIONS_HDRS)
        self._answer(tx, req, now, 405, b"Method Not Allowed", _ALLOW_HDRS)

    def _answer(self, tx, req, now, status, reason, hdrs=()):
        # RFC 3261 18.2.2: the response goes where the request came from (the transaction's
        # address, i.e. the Via's received/rport)
        self.layer.send_response(tx, message.response(req, status, reason, hdrs, to_tag=self.tag_for(req)), now)

    # --- outgoing MESSAGE (RFC 3428) --------------------------------------------------------
    def send_message(self, to_uri, body, ctype, now, done=None):
        """Send body to to_uri through the proxy; done(ok, why, now) when it finishes."""
        if self.state != REGISTERED:
            if done:
                done(False, "not registered", now)
            return
        if self.in_flight() >= MAX_TX:
            # bounded memory under a flood: refuse rather than grow (events retry later)
            self.log("warn", "MESSAGE to %s not sent: %d requests in flight" % (_text(to_uri), self.in_flight()))
            if done:
                done(False, "busy", now)
            return
        hdrs = [(b"Content-Type", ctype)]
        req = self.build(b"MESSAGE", to_uri, to_uri, self.new_call_id(), 1, hdrs, body)

        def fin(resp, t):
            if resp is not None and resp.status < 200:
                return
            st = resp.status if resp is not None else 408
            if st == 494 and self.state == REGISTERED and self.sa.protected():
                self._tampered(resp, t, "MESSAGE")
            elif st in (401, 407, 494):
                self.lost(t, "MESSAGE answered %d" % st)
            elif st >= 300:
                self.log("warn", "MESSAGE to %s answered %d" % (_text(to_uri), st))
            if done:
                done(200 <= st < 300, "%d" % st, t)
        self.start_tx(req, now, fin)
