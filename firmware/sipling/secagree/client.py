# RFC 3329 client: the sans-IO agreement state machine (sections 2.3.1, 2.3.2, 2.4, 2.5,
# 5, Appendix A; DESIGN.md 4 client rules 1-9). Fed responses (status + raw header lines)
# and now_ms; returns events. Never touches sockets, clocks or the SA database: the app
# installs SAs from the Agreement and sends what request_headers() says.
#
# Events are (kind, data) tuples:
#   ("offer", None)      send a fresh request carrying request_headers() (new offer)
#   ("agreed", Agreement) install the protection, then resend under it with request_headers()
#   ("abort", reason)    agreement aborted; a fresh one starts at get_timer() (backoff)
#   ("failed", reason)   retry budget spent; nothing may be sent until reset()
#   ("tamper", reason)   494 to a protected request: association dropped (an "offer" follows)
#   ("drop", Agreement)  remove this association's SAs now
#   ("expired", None)    the binding ran out: association dropped, start() again
#   ("rechallenge", None) digest re-challenge under the agreement (2.5): answer it
#   ("log", text) / ("alarm", text)  lines for the device log (no keys in them)

from micropython import const

from sipling.secagree import mech as _m
from sipling.secagree import policy as _p
from sipling.secagree import choose as _c
from sipling.secagree.agreement import Agreement

IDLE = const(0)
OFFERED = const(1)
AGREED = const(2)
REFRESHING = const(3)
BACKOFF = const(4)
FAILED = const(5)
STATE_NAMES = ("IDLE", "OFFERED", "AGREED", "REFRESHING", "BACKOFF", "FAILED")

SEC_AGREE = b"sec-agree"
_SPI_MIN = const(256)  # RFC 4303 2.1: SPIs 1-255 are reserved, 0 is never used


def _lname(n):
    return (n if isinstance(n, bytes) else str(n).encode()).lower()


def header_lines(resp, name):
    """Raw values of every `name` header line, in order, from a Message (header_lines)
    or a list of (name, value) pairs. Values are returned as received, as bytes."""
    f = getattr(resp, "header_lines", None)
    if f is not None:
        vals = f(name.decode() if isinstance(name, bytes) else name)
        return [v if isinstance(v, bytes) else str(v).encode() for v in vals]
    want = _lname(name)
    return [v if isinstance(v, bytes) else str(v).encode()
            for n, v in resp if _lname(n) == want]


def _has_digest_challenge(resp):
    for h in (b"WWW-Authenticate", b"Proxy-Authenticate"):
        for v in header_lines(resp, h):
            v = v.strip(b" \t\r\n")
            # challenge = "Digest" LWS digest-cln *(COMMA digest-cln) (RFC 3261 25.1)
            if v[:6].lower() == b"digest" and len(v) > 7 and v[6] in b" \t\r\n":
                return True
    return False


def offer_headers(policy, local):
    """Headers for the first request to the first-hop proxy (RFC 3329 2.3.1): one
    Security-Client line per offered mechanism (ipsec-3gpp: one per (alg, ealg) pair,
    all carrying our spi-c, spi-s, port-c, port-s; no q), Require and Proxy-Require
    sec-agree, Supported sec-agree (2.3.2). `local`: dict spi_c, spi_s, port_c, port_s."""
    out = []
    for name in policy.offered():
        if name == _p.IPSEC_3GPP:
            for alg, ealg in policy.ipsec_algs:
                out.append((b"Security-Client", _m.serialize(name, (
                    (b"prot", b"esp"), (b"mod", b"trans"),
                    (b"spi-c", local["spi_c"]), (b"spi-s", local["spi_s"]),
                    (b"port-c", local["port_c"]), (b"port-s", local["port_s"]),
                    (b"alg", alg), (b"ealg", ealg)))))
        else:
            out.append((b"Security-Client", name))
    out.append((b"Require", SEC_AGREE))
    out.append((b"Proxy-Require", SEC_AGREE))
    out.append((b"Supported", SEC_AGREE))
    return out


class SecAgreeClient:
    """One agreement with one first-hop proxy. `rand(n)` returns n random bytes (the
    shell passes os.urandom); SPIs and port-c are drawn fresh for every offer."""

    def __init__(self, policy, rand):
        self.policy = policy
        self._rand = rand
        self.state = IDLE
        self.agreement = None
        self.local = None        # our spi/ports in the outstanding offer
        self._used_spis = ()
        self._attempts = 0
        self._retry_at = None
        self._expires_at = None

    # ----- local values ------------------------------------------------------------
    def _u32(self):
        b = self._rand(4)
        return (b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]

    def _fresh_spi(self, avoid):
        while True:
            s = self._u32()
            if s >= _SPI_MIN and s not in avoid:
                return s

    def _fresh_local(self):
        # Fresh SPIs and port-c on every offer; port-s stays (DESIGN.md 4 rule 9).
        avoid = list(self._used_spis)
        spi_c = self._fresh_spi(avoid)
        avoid.append(spi_c)
        spi_s = self._fresh_spi(avoid)
        pol = self.policy
        old = self.local["port_c"] if self.local else None
        if self.agreement is not None:
            old = self.agreement.local["port_c"]
        while True:
            pc = pol.port_c + self._u32() % pol.port_c_span
            if pc != pol.port_s and pc != old:
                break
        self._used_spis = (spi_c, spi_s) + tuple(self._used_spis[:2])
        return {"spi_c": spi_c, "spi_s": spi_s, "port_c": pc, "port_s": pol.port_s}

    # ----- driving -----------------------------------------------------------------
    def start(self, now_ms):
        """Begin a fresh agreement: new SPIs and port-c, state OFFERED."""
        self.local = self._fresh_local()
        self.state = OFFERED
        self._retry_at = None
        return [("offer", None), ("log", "sec-agree: offering %s" % self._offer_desc())]

    def _offer_desc(self):
        return ", ".join(m.decode() for m in self.policy.offered())

    def reset(self):
        """Forget everything (after FAILED, when the app decides to try again)."""
        self.__init__(self.policy, self._rand)

    def request_headers(self):
        """(name, value) pairs every request to this server carries now. Raises
        RuntimeError when nothing may be sent (no agreement and no offer outstanding)."""
        st = self.state
        if st == OFFERED:
            return offer_headers(self.policy, self.local)
        if st in (AGREED, REFRESHING):
            out = []
            if st == REFRESHING:
                out = [h for h in offer_headers(self.policy, self.local) if h[0] == b"Security-Client"]
            return out + self.agreement.verify_headers()
        raise RuntimeError("sec-agree: no agreement in state " + STATE_NAMES[st])

    def protected(self):
        """True when requests must travel under the agreed protection."""
        return self.state in (AGREED, REFRESHING)

    def refresh(self, now_ms):
        """Registration refresh (2.5, App. A): offer fresh SPIs and port-c under the old
        association; port-s stays. The old association stays until a new one is agreed."""
        if self.state != AGREED:
            raise RuntimeError("refresh needs an agreement")
        self.local = self._fresh_local()
        self.state = REFRESHING
        return [("log", "sec-agree: refresh, offering fresh SPIs and port-c %d" % self.local["port_c"])]

    def binding(self, expires_s, now_ms):
        """The registration binding's lifetime: the association lives exactly as long."""
        self._expires_at = now_ms + int(expires_s) * 1000

    def get_timer(self):
        t = [x for x in (self._retry_at, self._expires_at) if x is not None]
        return min(t) if t else None

    def handle_timer(self, now_ms):
        ev = []
        if self._expires_at is not None and now_ms >= self._expires_at:
            self._expires_at = None
            if self.agreement is not None:
                ev.append(("drop", self.agreement))
                ev.append(("log", "sec-agree: binding expired, association dropped"))
                self.agreement = None
                ev.append(("expired", None))
                self.state = IDLE
        if self._retry_at is not None and now_ms >= self._retry_at:
            # a due timer is always consumed, so get_timer() never stays in the past
            self._retry_at = None
            if self.state == BACKOFF:
                ev += self.start(now_ms)
        return ev

    # ----- responses ---------------------------------------------------------------
    def on_response(self, status, resp, now_ms, protected=None):
        """Feed a final response to a request that carried request_headers().

        `resp`: Message or list of (name, value) raw header pairs. `protected`: whether
        that request went under the agreed protection (default: the current state)."""
        status = int(status)
        if status < 200:
            return []
        if protected is None:
            protected = self.protected()
        st = self.state
        server = header_lines(resp, b"Security-Server")
        if protected and status == 494:
            return self._tamper(now_ms)
        if protected and 200 <= status < 300:
            # the server accepted our Security-Verify: only now is the agreement confirmed
            # and the retry budget restored (a tamper/agree loop stays bounded)
            self._attempts = 0
        if st == OFFERED or (st == REFRESHING and server):
            trigger = status == 494 or (status in (401, 407) and server)
            if status == 421:
                if SEC_AGREE not in _m.option_tags(header_lines(resp, b"Require")):
                    return self._abort(now_ms, "421 without Require: sec-agree")
                trigger = True  # server initiated (2.3.2)
            if trigger:
                if not server:
                    return self._abort(now_ms, "%d without Security-Server" % status)
                return self._choose(server, resp, status, now_ms)
            if st == REFRESHING and 200 <= status < 300:
                self.state = AGREED
                return [("log", "sec-agree: refresh kept %s" % self.agreement.mechanism.decode())]
            if 200 <= status < 300:
                return self._abort(now_ms, "%d without security agreement: the server ignored "
                                   "sec-agree; nothing more is sent unprotected" % status)
            return self._abort(now_ms, "%d to the offer" % status)
        if st == REFRESHING and 200 <= status < 300:
            self.state = AGREED
            return [("log", "sec-agree: refresh kept %s" % self.agreement.mechanism.decode())]
        if st in (AGREED, REFRESHING) and status in (401, 407):
            if self.agreement.mechanism == _p.DIGEST:
                return [("rechallenge", None)]
        return []

    def _choose(self, server, resp, status, now_ms):
        try:
            best, ip, refused = _c.choose(server, self.policy, _has_digest_challenge(resp))
        except _c.Abort as e:
            return self._abort(now_ms, str(e))
        if ip is not None and (ip["spi_c"] in (self.local["spi_c"], self.local["spi_s"])
                               or ip["spi_s"] in (self.local["spi_c"], self.local["spi_s"])):
            # SPIs are chosen by the receiver and name one SA each (TS 33.203 7.1): a server
            # SPI equal to one of ours would let our own packets, reflected, pass as its
            # (issue 10 finding 9); such an answer is not a usable agreement
            return self._abort(now_ms, "Security-Server reuses one of our SPIs (reflection)")
        ev = []
        old = self.agreement
        if old is not None:
            ev.append(("drop", old))
        ag = Agreement(best, ip, server, self.local, refused, status)
        self.agreement = ag
        self.state = AGREED
        self._retry_at = None
        for raw, why in refused:
            ev.append(("log", "sec-agree: refused %s: %s" % (_c.short(raw), why)))
        ev.append(("log", "sec-agree: agreed %s (q=%s, from %d)%s" % (
            ag.describe(), _c.qstr(best.q), status, " on refresh" if old is not None else "")))
        ev.append(("agreed", ag))
        return ev

    def _give_up_or_wait(self, now_ms, ev):
        self._attempts += 1
        pol = self.policy
        if self._attempts > pol.max_retries:
            self.state = FAILED
            self._retry_at = None
            ev.append(("log", "sec-agree: giving up after %d attempts" % self._attempts))
            ev.append(("failed", "retry budget spent"))
            return ev
        delay = pol.backoff_ms << (self._attempts - 1)
        if delay > pol.backoff_max_ms:
            delay = pol.backoff_max_ms
        self.state = BACKOFF
        self._retry_at = now_ms + delay
        ev.append(("log", "sec-agree: new agreement in %d ms (attempt %d of %d)"
                   % (delay, self._attempts + 1, pol.max_retries + 1)))
        return ev

    def _abort(self, now_ms, reason):
        ev = [("log", "sec-agree: aborted: " + reason), ("abort", reason)]
        # An abort during refresh ends the agreement too: never continue a broken one.
        if self.agreement is not None:
            ev.append(("drop", self.agreement))
            self.agreement = None
        return self._give_up_or_wait(now_ms, ev)

    def _tamper(self, now_ms):
        # 2.3.1: the server answers 494 with its unmodified list when the Security-Verify
        # it got differs from its list; to us that means the list was tampered with.
        reason = "494 to a protected request: Security-Server list was tampered with"
        ev = [("alarm", "sec-agree: " + reason), ("tamper", reason)]
        if self.agreement is not None:
            ev.append(("drop", self.agreement))
            self.agreement = None
        self._attempts += 1
        if self._attempts > self.policy.max_retries:
            self.state = FAILED
            ev.append(("failed", "retry budget spent"))
            return ev
        return ev + self.start(now_ms)
