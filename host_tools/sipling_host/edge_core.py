"""`sipling edge` core (sans-IO): the devices' first hop in front of a plain SIP proxy.

Three kinds of datagram go in, tagged with where they came from, and (kind, bytes, addr)
tuples come out from :meth:`Edge.datagrams_to_send`:

- ``plain``: unprotected SIP on the edge's SIP port (a device's first REGISTER);
- ``esp``:   ESP packets (the UDP payload of ESP-in-UDP, RFC 3948, or raw protocol 50);
- ``inner``: plain SIP to and from the home proxy.

The edge is a stateless-style proxy (RFC 3261 section 16) with a small branch table: it adds
its Via to everything it relays, Path (RFC 3327) to REGISTER and Record-Route to dialog-forming
requests, so requests for a device come back through it and leave on that device's SAs.
Time is injected (``now_ms``); randomness too (``rand(n)``).
"""
from sipling.sip.message import SipError, response

from . import edge_secagree as sa
from .edge_esp import EspDrop
from .edge_route import Router

IDLE, OFFERED, ACTIVE = 0, 1, 2
STATES = ("idle", "offered", "active")


class EdgeConfig:
    """Addresses and policy of one edge (see `sipling edge --help`)."""

    def __init__(self, host="127.0.0.1", sip_port=5060, encap_port=4500, inner_port=5059,
                 proxy=("127.0.0.1", 5070), port_pc=5066, port_ps=5068, challenge="494",
                 realm="sipling", offer_ms=64000, trust_pai=True):
        self.host = host
        self.sip_port = sip_port
        self.encap_port = encap_port
        self.inner_port = inner_port
        self.proxy = proxy
        self.port_pc = port_pc
        self.port_ps = port_ps
        self.challenge = challenge   # "494" or "401"
        self.realm = realm
        self.offer_ms = offer_ms     # how long a 494's offers wait for the device's choice
        # pass P-Asserted-Identity from the proxy to devices (RFC 3325: the proxy authenticated
        # the sender and asserted it; only the proxy's own address is heard on the inner side)
        self.trust_pai = trust_pai


class Session:
    """What the edge knows about one device at run time (never its keys)."""

    def __init__(self, dev):
        self.dev = dev
        self.state = IDLE
        self.offers = []          # a Security-Server list sent and not yet answered (Offers)
        self.agreed = []          # the list the agreement in use came from (Security-Verify)
        self.offered_at = 0
        self.chosen = None        # Offer in use
        self.peer = None          # (ip, port) the device's last authenticated ESP came from
        self.via = None           # "esp" (ESP-in-UDP) or "raw" (IP protocol 50)
        self.reg_until = None     # ms: when the association ends (binding expiry)
        self.bound = False        # the proxy holds a binding for the device
        self.nonce = None         # 401 mode
        self.offer_for = None     # (Call-ID, CSeq, branch) of the REGISTER the offer answered
        self.offer_wire = None    # and the bytes of that answer, resent for its retransmissions
        self.man_call_id = None   # Call-ID of the device's last ipsec-man registration
        self.drops = {}

    def drop(self, reason):
        self.drops[reason] = self.drops.get(reason, 0) + 1


def _request_id(msg):
    # what names a request's transaction for retransmission matching (RFC 3261 17.2.3)
    return (msg.call_id(), msg.get("CSeq"), msg.via_branch())


class Edge(Router):
    """The edge: sessions, sec-agree server side and ESP here; relaying in edge_route.Router."""

    def __init__(self, cfg, store, esp, log, rand):
        self.cfg = cfg
        self.store = store        # edge_bundle.BundleStore
        self.esp = esp            # edge_esp.EdgeEsp
        self.log = log            # log(level, device_or_None, text)
        self.rand = rand
        self.sessions = {}        # bundle name -> Session
        self.drops = {}           # drops not tied to a device
        self._spi_owner = {}      # inbound SPI -> (Session, Offer)
        self._txn = {}            # our branch -> [expires_ms, kind, data...]
        self._out = []
        self.inner_addr = (cfg.host, cfg.inner_port)
        self._branch_key = rand(16)  # edge_route._derived_branch

    # -- bundles -------------------------------------------------------------------
    def reload(self, now_ms=0, force=False):
        added, changed, removed = self.store.scan(force)
        for name in removed + changed:
            s = self.sessions.pop(name, None)
            if s is not None:
                self._end(s, "bundle %s" % ("removed" if name in removed else "changed"), drop_man=True)
        for name in added + changed:
            s = self.sessions[name] = Session(self.store.devices[name])
            self.log("info", name, "bundle loaded: %s, mechanisms %s" % (s.dev.aor, self._mechs(s.dev)))
            if s.dev.man is not None:
                # manual SAs exist from the start: a device still using them after an edge
                # restart gets a protected 494 at once and renegotiates (RFC 3329 2.3.1)
                self._install_offers(s, [sa.man_offer(s.dev)])
        return added, changed, removed

    @staticmethod
    def _mechs(dev):
        m = ["ipsec-3gpp %s/%s" % p for p in dev.algs] if dev.ik is not None else []
        if dev.man is not None:
            m.append("ipsec-man")
        return ", ".join(m)

    # -- output --------------------------------------------------------------------
    def datagrams_to_send(self):
        out, self._out = self._out, []
        return out

    def _send_inner(self, msg, addr=None):
        self._out.append(("inner", msg.serialize(), addr or self.cfg.proxy))

    def _send_plain(self, msg, addr):
        self._out.append(("plain", msg.serialize(), addr))

    def _send_device(self, s, offer, outbound_spi, sport, dport, msg):
        peer = s.peer or (s.dev.peer_host, s.dev.peer_encap_port)
        pkt = self.esp.protect(offer, outbound_spi, sport, dport, msg.serialize(), self.cfg.host, peer[0])
        via = s.via or ("raw" if s.dev.carrier == "raw" else "esp")
        self._out.append((via, pkt, peer))

    def _drop(self, s, reason, detail=""):
        if s is None:
            self.drops[reason] = self.drops.get(reason, 0) + 1
        else:
            s.drop(reason)
        self.log("warn", s.dev.name if s else None, "drop (%s)%s" % (reason, ": " + detail if detail else ""))

    def _new_spi(self):
        while True:
            spi = int.from_bytes(self.rand(4), "big")
            if spi > 255 and spi not in self._spi_owner and not self.esp.has_spi(spi):
                self._spi_owner[spi] = None  # reserved until the offer is stored
                return spi

    # -- timers --------------------------------------------------------------------
    def get_timer(self):
        t = [e[0] for e in self._txn.values()]
        for s in self.sessions.values():
            if s.state == OFFERED:
                t.append(s.offered_at + self.cfg.offer_ms)
            if s.reg_until is not None:
                t.append(s.reg_until)
        return min(t) if t else None

    def handle_timer(self, now_ms):
        for b in [b for b, e in self._txn.items() if e[0] <= now_ms]:
            del self._txn[b]
        for s in self.sessions.values():
            if s.state == OFFERED and now_ms >= s.offered_at + self.cfg.offer_ms:
                self._forget_offers(s)
                s.offers = []
                s.state = ACTIVE if s.chosen else IDLE
                self.log("info", s.dev.name, "offer expired without a protected request")
            if s.reg_until is not None and now_ms >= s.reg_until:
                self._end(s, "registration expired")

    # -- associations --------------------------------------------------------------
    def _install_offers(self, s, offers):
        for o in offers:
            if o.kind == sa.IPSEC_3GPP:
                self.esp.install_3gpp(o, s.dev.ik, s.dev.ck)
            elif not self.esp.has_spi(o.spi_ps):
                self.esp.install_man(o, s.dev.man)   # manual SAs live as long as the bundle
            self._spi_owner[o.spi_ps] = (s, o)
            self._spi_owner[o.spi_pc] = (s, o)

    def _forget_offers(self, s, keep=None):
        for o in s.offers:
            if o is not keep and o.kind != sa.IPSEC_MAN:
                self._unbind(o)

    def _unbind(self, o):
        self.esp.remove(o)
        self._spi_owner.pop(o.spi_ps, None)
        self._spi_owner.pop(o.spi_pc, None)

    def _end(self, s, why, drop_man=False):
        """End the association. Manual SAs stay installed (their replay window and
        sequence numbers must not restart) unless the bundle itself went away."""
        gone = list(s.offers)
        if s.chosen is not None:
            gone.append(s.chosen)
        for o in gone:
            if o.kind != sa.IPSEC_MAN or drop_man:
                self._unbind(o)
        was = STATES[s.state]
        s.state, s.offers, s.agreed, s.chosen, s.reg_until, s.bound = IDLE, [], [], None, None, False
        self.log("info", s.dev.name, "association ended (%s; was %s), registration state: unregistered"
                 % (why, was))

    def _commit(self, s, offer):
        old = s.chosen
        self._forget_offers(s, keep=offer)
        if old is not None and old is not offer and old.kind != sa.IPSEC_MAN:
            self._unbind(old)  # re-keyed: the old SAs go once the new ones carried a request
        s.agreed, s.offers = s.offers, []
        s.chosen = offer
        s.state = ACTIVE
        self.log("info", s.dev.name, "agreed %s" % offer.describe())

    # -- plain SIP from devices ----------------------------------------------------
    def receive_plain(self, data, addr, now_ms):
        msg = self._parse(data, None)
        if msg is None or not msg.is_request:
            return
        try:
            s = self._session_for_to(msg)
            if msg.method != b"REGISTER" or s is None:
                if msg.method != b"ACK":
                    self._send_plain(response(msg, 403, b"Forbidden (use sec-agree through the edge)"), addr)
                self._drop(s, "unprotected", "%s from %s:%d" % (msg.method.decode("latin-1"), addr[0], addr[1]))
                return
            if s.state == OFFERED and s.offer_wire is not None and _request_id(msg) == s.offer_for:
                # a retransmission (or a duplicate on the way) of the REGISTER just answered:
                # the same answer again, the same SPIs (RFC 3261 17.2.2), never a fresh offer
                # that would make the device's choice from the first answer unknown_spi
                self._out.append(("plain", s.offer_wire, addr))
                return
            if not sa.wants_secagree(msg):
                # server-initiated agreement (RFC 3329 2.3.2): 421 with Require: sec-agree
                self._send_plain(response(msg, 421, b"Extension Required", [(b"Require", b"sec-agree")]), addr)
                return
            offers = sa.build_offers(s.dev, sa.client_mechs(msg), (self.cfg.port_pc, self.cfg.port_ps),
                                     self._new_spi)
        except (SipError, sa.mech.ParseError) as e:
            self._send_plain(response(msg, 400, ("Bad Request (%s)" % e).encode()), addr)
            return
        if not offers:
            self._send_plain(response(msg, 494, b"Security Agreement Required (no mechanism in common)"), addr)
            self.log("warn", s.dev.name, "REGISTER offers no mechanism in common with the bundle")
            return
        rsp = self._offer(s, msg, offers, now_ms, self.cfg.challenge == "401")
        s.offer_for, s.offer_wire = _request_id(msg), rsp.serialize()
        self._out.append(("plain", s.offer_wire, addr))

    def _offer(self, s, msg, offers, now_ms, challenge):
        """Install the offered SA sets and build the 494/401 that lists them. The SAs of the
        agreement in use (if any) keep working until the device uses one of the new sets."""
        self._forget_offers(s)
        self._install_offers(s, offers)
        s.offers, s.offered_at, s.state = offers, now_ms, OFFERED
        hdrs = [(b"Security-Server", o.line) for o in offers]
        if challenge:
            s.nonce = self.rand(16).hex().encode()
            hdrs.insert(0, (b"WWW-Authenticate", b'Digest realm="%s", nonce="%s", algorithm=MD5, qop="auth"'
                            % (self.cfg.realm.encode(), s.nonce)))
            rsp = response(msg, 401, b"Unauthorized", hdrs)
        else:
            rsp = response(msg, 494, b"Security Agreement Required", hdrs)
        self.log("info", s.dev.name, "offered %s (%s)" % (
            ", ".join(o.line.split(b";")[0].decode("latin-1") + "/" + o.alg + "/" + o.ealg for o in offers),
            "401" if challenge else "494"))
        return rsp

    def _session_for_to(self, msg):
        to = msg.to_addr()
        dev = self.store.by_aor(to[1].serialize().decode("latin-1")) if to else None
        if dev is None:
            return None
        return self.sessions.get(dev.name)

    def _parse(self, data, s):
        from sipling.sip.parser import parse
        try:
            return parse(bytes(data))
        except SipError as e:
            self._drop(s, "bad-sip", str(e))
            return None

    # -- ESP from devices -----------------------------------------------------------
    def receive_esp(self, data, addr, now_ms, via="esp"):
        if len(data) == 1 and data[0] == 0xFF:
            return  # NAT keep-alive (RFC 3948 section 2.3)
        try:
            spi, sport, dport, payload = self.esp.unprotect(data, addr[0], self.cfg.host)
        except EspDrop as e:
            owner = self._spi_owner.get(e.spi) if e.spi is not None else None
            self._drop(owner[0] if owner else None, e.reason, "ESP from %s:%d spi=%s" % (addr[0], addr[1], e.spi))
            return
        owner = self._spi_owner.get(spi)
        if owner is None:
            self._drop(None, "unknown-spi", "spi=%d" % spi)
            return
        s, offer = owner
        s.peer, s.via = addr, via  # RFC 3948: reply where the authenticated ESP came from
        msg = self._parse(payload, s)
        if msg is None:
            return
        try:
            if msg.is_request:
                self._device_request(s, offer, msg, sport, now_ms)
            else:
                self._device_response(s, msg)
        except SipError as e:  # a header the parser left for later turned out malformed
            self._drop(s, "bad-sip", str(e))
            if msg.is_request and msg.method != b"ACK":
                self._reply_protected(s, offer, msg, sport, e.status, e.reason.encode())

    def _reply_protected(self, s, offer, req, sport, status, reason, hdrs=()):
        # responses to the device's requests leave on SA 3: edge port-s -> device port-c
        self._send_device(s, offer, offer.spi_uc, offer.port_ps, sport, response(req, status, reason, hdrs))

    def _device_request(self, s, offer, msg, sport, now_ms):
        lists = []
        if offer in s.offers:
            lists.append(s.offers)  # the device answers the list just offered
        if offer is s.chosen or (s.chosen is not None and offer.kind == s.chosen.kind == sa.IPSEC_MAN):
            # the agreement in use (manual SAs are the same SAs in every list: a plain
            # REGISTER from anyone must not turn the device's current list into a mismatch)
            lists.append(s.agreed)
        if not lists:
            # a manual SA still works but no list was sent: make the device start over
            self._reply_protected(s, offer, msg, sport, 494, b"Security Agreement Required")
            self._drop(s, "no-agreement", msg.method.decode("latin-1"))
            return
        sent = lists[0]
        for cand in lists:
            if sa.verify_ok(msg, cand):
                sent = cand
                break
        if not sa.verify_ok(msg, sent):
            # RFC 3329 2.3.1 step 5: the list the device saw was not ours; answer with it
            self._reply_protected(s, offer, msg, sport, 494, b"Security Agreement Required",
                                  [(b"Security-Server", o.line) for o in sent])
            self._drop(s, "verify-mismatch", "Security-Verify does not mirror Security-Server; association dropped")
            self._end(s, "Security-Verify mismatch")
            return
        if sent is s.offers:
            why = self._auth_problem(s, msg) if self.cfg.challenge == "401" else None
            if why:
                self._reply_protected(s, offer, msg, sport, 403, b"Forbidden (digest)")
                self._drop(s, "bad-digest", why)
                self._end(s, "digest failed")
                return
            self._commit(s, offer)
        elif msg.method == b"REGISTER" and self.cfg.challenge == "401" and self._rekey(s, offer, msg, sport, now_ms):
            return
        if msg.method == b"REGISTER" and offer.kind == sa.IPSEC_MAN and msg.call_id() != s.man_call_id:
            # a device starts each registration with a fresh Call-ID (RFC 3261 10.2.4: a
            # refresh keeps it): it may have rebooted, so skip what its rounded-up replay
            # marks refuse before answering it on those SAs
            s.man_call_id = msg.call_id()
            self.esp.skip_marks(offer)
        if msg.method == b"REGISTER":
            to = msg.to_addr()
            d = self.store.by_aor(to[1].serialize().decode("latin-1")) if to is not None else None
            if d is None or d.name != s.dev.name:
                self._reply_protected(s, offer, msg, sport, 403, b"Forbidden (not this device's AOR)")
                self._drop(s, "wrong-aor")
                return
        try:
            self._relay_up(s, offer, msg, sport, now_ms)
        except SipError as e:
            self._reply_protected(s, offer, msg, sport, e.status, e.reason.encode())

    def _rekey(self, s, offer, msg, sport, now_ms):
        """A protected refresh REGISTER offering fresh SPIs (RFC 3329 2.5 / TS 33.203
        re-registration): answer on the current SAs with 401 + a fresh Security-Server list;
        the old SAs stay until the device uses the new ones. True when answered."""
        try:
            client = sa.client_mechs(msg)
            offers = sa.build_offers(s.dev, client, (self.cfg.port_pc, self.cfg.port_ps), self._new_spi)
        except sa.mech.ParseError:
            return False
        if not offers or all(o.kind == sa.IPSEC_MAN for o in offers):
            return False
        if (offers[0].spi_uc, offers[0].spi_us) == (s.chosen.spi_uc, s.chosen.spi_us):
            for o in offers:
                if o.kind != sa.IPSEC_MAN:
                    self._unbind(o)
            return False  # same SPIs as in use: a plain refresh, relay it
        rsp = self._offer(s, msg, offers, now_ms, True)
        self._send_device(s, offer, offer.spi_uc, offer.port_ps, sport, rsp)
        return True

    def _auth_problem(self, s, msg):
        """None when the REGISTER answers our Digest challenge (RFC 2617 3.2.2) with the
        bundle's password, else why not (no secrets in it)."""
        from sipling.sip import digest
        lines = msg.get_all("Authorization")
        if not lines:
            # the SA keys (from the bundle) already authenticate the device; a device that
            # does not answer the challenge under ipsec is let in, and the log says so
            self.log("info", s.dev.name, "no Digest answer in the protected REGISTER; the SA keys authenticate it")
            return None
        for v in lines:
            try:
                chs = digest.parse_challenges(v)
            except digest.DigestError as e:
                return "unparseable Authorization (%s)" % e
            for scheme, p in chs:
                if scheme != b"digest" or p.get(b"nonce") != s.nonce:
                    continue
                if p.get(b"username") != s.dev.user.encode():
                    return "username %s is not the bundle's" % p.get(b"username", b"").decode("latin-1")
                alg = p.get(b"algorithm", b"MD5")
                h1 = digest.ha1(alg, p[b"username"], p.get(b"realm", b""), s.dev.password.encode(),
                                s.nonce, p.get(b"cnonce", b""))
                qop = p.get(b"qop")
                h2 = digest.ha2(alg, msg.method, p.get(b"uri", b""), qop, msg.body)
                want = digest.response_digest(alg, h1, s.nonce, p.get(b"nc"), p.get(b"cnonce"), qop, h2)
                return None if want == p.get(b"response") else "wrong digest response (password?)"
        return "no Authorization for our nonce"

    def status_lines(self, now_ms):
        """One line per device for logs/SIGUSR1: state, mechanism, SPIs, drops."""
        out = []
        for name in sorted(self.sessions):
            s = self.sessions[name]
            reg = "registered, %ds left" % ((s.reg_until - now_ms) // 1000) if s.bound else "unregistered"
            mechs = s.chosen.describe() if s.chosen else "-"
            drops = " ".join("%s=%d" % kv for kv in sorted(s.drops.items())) or "none"
            out.append("%s: %s, %s, %s, drops: %s" % (name, STATES[s.state], reg, mechs, drops))
        return out
