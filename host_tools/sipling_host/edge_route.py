"""Relaying between devices and the home proxy for `sipling edge` (RFC 3261 section 16).

A mixin of :class:`sipling_host.edge_core.Edge`: stateless-style proxying with a branch
table. Upward it adds Via, Path (RFC 3327) on REGISTER, Record-Route on dialog-forming
requests and P-Asserted-Identity (RFC 3325); downward it follows the Route the proxy took
from the stored Path and sends on the device's SA 2; responses go back by branch.
"""
import hashlib

from sipling.sip import uri as urimod
from sipling.sip.message import SipError, response

from . import edge_secagree as sa

_TXN_MS = 32000          # 64*T1 (RFC 3261 17.1.2.2, timer F): a branch entry lives this long
_DIALOG = (b"INVITE", b"SUBSCRIBE", b"REFER", b"NOTIFY")


class Router:
    def _relay_up(self, s, offer, msg, sport, now_ms):
        _max_forwards(msg)
        self._pop_my_route(msg)  # an in-dialog request's Route to our Record-Route entry
        sa.strip_for_proxy(msg)
        msg.remove("Authorization")
        msg.remove("P-Asserted-Identity")
        if msg.method != b"REGISTER":
            # RFC 3325: the edge authenticated the device by its SA, so it asserts the AOR
            msg.add("P-Asserted-Identity", b"<" + s.dev.aor.encode() + b">")
        me = self._my_uri(s)
        if msg.method == b"REGISTER":
            msg.add("Path", b"<" + me + b";lr>")
        elif msg.method in _DIALOG and msg.to_tag() is None:
            msg.add("Record-Route", b"<" + me + b";lr>", first=True)
        br = self._derived_branch(msg, b"up")
        msg.add("Via", b"SIP/2.0/UDP %s:%d;branch=%s;rport" % (
            self.cfg.host.encode(), self.cfg.inner_port, br), first=True)
        self._txn[br] = [now_ms + _TXN_MS, "up", s, offer, sport, msg.method]
        self._send_inner(msg)

    def _derived_branch(self, msg, way):
        """RFC 3261 16.11: the edge keeps no server transactions, so it derives its branch
        from the request: every retransmission leaves with one branch and the next hop
        (Kamailio upward, the board downward) absorbs it in its own server transaction, and
        a CANCEL or the ACK for a non-2xx (same top Via as their INVITE, 9.1 / 17.1.1.3)
        still match. Keyed with a per-edge secret so nobody can aim at a branch."""
        top = urimod.split_top(msg.get("Via") or b"", 44)[0].strip()
        parts = [self._branch_key, way, top]
        if b"branch=z9hG4bK" not in top:
            # RFC 2543 peer: no usable branch, so the fields that name its transaction
            parts += [msg.uri or b"", msg.call_id() or b"", msg.get("From") or b"", msg.get("CSeq") or b""]
        return b"z9hG4bK-se" + hashlib.sha256(b"\n".join(parts)).hexdigest()[:24].encode()

    def _my_uri(self, s):
        # the bundle name identifies the device in Path/Record-Route (user part escaped,
        # RFC 3261 19.1.2), so requests routed by it find their device
        user = "".join(c if c.isalnum() or c in "-_.!~*'()" else "%%%02X" % ord(c) for c in s.dev.name)
        return b"sip:%s@%s:%d" % (user.encode(), self.cfg.host.encode(), self.cfg.inner_port)

    def _device_response(self, s, msg):
        t = self._txn.get(msg.via_branch() or b"")
        if t is None or t[1] != "down" or t[2] is not s:
            self._drop(s, "stray-response", "%d" % msg.status)
            return
        _pop_via(msg)
        self._send_inner(msg, t[3])

    # -- plain SIP from the proxy ---------------------------------------------------
    def receive_inner(self, data, addr, now_ms):
        if tuple(addr) != tuple(self.cfg.proxy):
            # only the configured proxy may speak on the proxy side: what it relays is
            # authenticated there (RFC 3325 9.1 trust domain), anyone else is a forger
            self._drop(None, "not-from-proxy", "%s:%d is not the proxy %s:%d" % (addr[0], addr[1], self.cfg.proxy[0], self.cfg.proxy[1]))
            return
        msg = self._parse(data, None)
        if msg is None:
            return
        if not msg.is_request:
            t = self._txn.get(msg.via_branch() or b"")
            if t is None or t[1] != "up":
                self._drop(None, "stray-response", "from proxy: %d" % msg.status)
                return
            _, _, s, offer, sport, method = t
            _pop_via(msg)
            if method == b"REGISTER" and 200 <= msg.status < 300:
                self._registered(s, msg, now_ms)
            if offer is not s.chosen and offer not in s.offers and offer.kind != sa.IPSEC_MAN:
                self._drop(s, "stale-association", "response after the SA was removed")
                return
            self._send_device(s, offer, offer.spi_uc, offer.port_ps, sport, msg)
            return
        try:
            self._request_down(msg, addr, now_ms)
        except SipError as e:
            if msg.method != b"ACK":
                self._send_inner(response(msg, e.status, e.reason.encode()), addr)

    def _request_down(self, msg, addr, now_ms):
        s = self._pop_my_route(msg)
        if s is None:
            u = urimod.parse_uri(msg.uri)
            for cand in self.sessions.values():
                if u.user is not None and u.user.decode("latin-1") == cand.dev.user:
                    s = cand
        if s is None or s.chosen is None:
            if msg.method != b"ACK":
                self._send_inner(response(msg, 480, b"Temporarily Unavailable (device not connected to the edge)"), addr)
            self._drop(s, "not-connected", msg.method.decode("latin-1"))
            return
        _max_forwards(msg)
        if not self.cfg.trust_pai:
            msg.remove("P-Asserted-Identity")
        if msg.method in _DIALOG and msg.to_tag() is None:
            # stay on the dialog's route set (RFC 3261 16.6 step 4): in-dialog requests from
            # the far end come back to the edge and leave on this device's SAs
            msg.add("Record-Route", b"<" + self._my_uri(s) + b";lr>", first=True)
        o = s.chosen
        br = self._derived_branch(msg, b"down")
        msg.add("Via", b"SIP/2.0/UDP %s:%d;branch=%s;rport" % (self.cfg.host.encode(), o.port_pc, br), first=True)
        self._txn[br] = [now_ms + _TXN_MS, "down", s, addr]
        # requests for the device leave on SA 2: edge port-c -> device port-s
        self._send_device(s, o, o.spi_us, o.port_pc, o.port_us, msg)

    def _pop_my_route(self, msg):
        routes = msg.get_all("Route")
        if not routes:
            return None
        _, u, _ = urimod.parse_name_addr(routes[0])
        # a Route that is not a sip/sips URI (tel:, absolute URI) has no host: not ours
        if u.host is None or u.host.decode("latin-1") != self.cfg.host or (u.port or 5060) != self.cfg.inner_port:
            return None
        rest = routes[1:]
        msg.remove("Route")
        for r in rest:
            msg.add("Route", r)
        return self.sessions.get(u.user.decode("latin-1")) if u.user else None

    def _registered(self, s, msg, now_ms):
        exp = 0
        for c in msg.get_all("Contact"):
            _, _, params = urimod.parse_name_addr(c)
            v = urimod.param(params, b"expires")
            if v is not None and v.isdigit():
                exp = max(exp, int(v))
        if exp == 0 and msg.get("Expires") and msg.get("Expires").strip().isdigit() and msg.get_all("Contact"):
            exp = int(msg.get("Expires").strip())
        if exp > 0:
            s.reg_until = now_ms + exp * 1000
            s.bound = True
            self.log("info", s.dev.name, "registration state: registered for %d s via %s" % (
                exp, s.chosen.describe() if s.chosen else "?"))
        else:
            s.reg_until = now_ms + 2000  # keep the SAs briefly for the last response
            s.bound = False
            self.log("info", s.dev.name, "registration state: unregistered (binding removed)")


def _max_forwards(msg):
    # RFC 3261 16.6 step 3 / 16.3 step 2
    v = msg.get("Max-Forwards")
    if v is None:
        msg.add("Max-Forwards", b"70")
        return
    v = v.strip()
    if not v.isdigit() or int(v) == 0:
        raise SipError(483, "Too Many Hops")
    msg.set("Max-Forwards", b"%d" % (int(v) - 1))


def _pop_via(msg):
    # RFC 3261 16.7 step 3: remove the topmost Via value (which may share a line)
    hs = msg.headers
    for i in range(len(hs)):
        if hs[i][0].lower() in (b"via", b"v"):
            parts = urimod.split_top(urimod.unfold(hs[i][1]), 44)
            if len(parts) > 1:
                hs[i] = [hs[i][0], b",".join(parts[1:]).strip()]
            else:
                del hs[i]
            return
