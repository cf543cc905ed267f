# Client side of the device UA (sans-IO): request building (RFC 3261 8.1.1) and the
# non-INVITE client transaction over UDP (RFC 3261 17.1.2: Timer E retransmits at T1,
# doubling to T2; Timer F = 64*T1 ends it). Callbacks get (response, now) or (None, now)
# on timeout. Outgoing datagrams queue in self.out as (bytes, (ip, port)).
import binascii

from micropython import const

from . import message

_T2 = const(4000)
USER_AGENT = b"sipling/0.1"


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
        self.out = []
        self.txs = {}   # branch -> [bytes, dst, t_next, interval, deadline, cb, method, proceeding]

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
        self.out.append((data, dst))

    def datagrams_to_send(self):
        out = self.out
        self.out = []
        return out

    def start_tx(self, req, now, cb):
        data = req.serialize()
        self.txs[req.via_branch()] = [data, self.proxy, now + self.t1, self.t1, now + 64 * self.t1,
                                      cb, req.method, False]
        self.send(data, self.proxy)

    def on_response(self, resp, now):
        tx = self.txs.get(resp.via_branch())
        if tx is None:
            return  # stray or late (RFC 3261 17.1.3: no match, drop)
        try:
            cs = resp.cseq()
        except Exception:  # SipError: a response without a usable CSeq is dropped
            return
        if cs[1] != tx[6]:
            return
        if resp.status < 200:
            tx[7] = True  # Proceeding: retransmit at T2 (17.1.2.2)
            tx[3] = _T2
        else:
            del self.txs[resp.via_branch()]
        tx[5](resp, now)

    def tx_timer(self):
        t = None
        for tx in self.txs.values():
            m = tx[2] if tx[2] < tx[4] else tx[4]
            if t is None or m < t:
                t = m
        return t

    def tx_expire(self, now):
        for br in list(self.txs):
            tx = self.txs.get(br)
            if tx is None:
                continue
            if now >= tx[4]:  # Timer F
                del self.txs[br]
                tx[5](None, now)
            elif now >= tx[2]:  # Timer E
                self.send(tx[0], tx[1])
                iv = tx[3] * 2 if not tx[7] else tx[3]
                tx[3] = iv if iv < _T2 else _T2
                tx[2] = now + tx[3]

    def cancel_all(self, keep_messages=False):
        for br in list(self.txs):
            if not (keep_messages and self.txs[br][6] == b"MESSAGE"):
                del self.txs[br]


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

    def on_response(self, resp, now):
        """('retry', why) resend the request now; ('abort'|'tamper', why) start over later."""
        self.now = now
        v = self._events(self.client.on_response(resp.status, resp, now))
        if v is None:
            if resp.status in (401, 407) and self.ag is not None and self.ag.mechanism == b"digest":
                return self._challenge(resp, "%d" % resp.status)
            return "abort", "%d not handled by the agreement" % resp.status
        if v[0] in ("retry", "rechallenge") and self.ag is not None and self.ag.mechanism == b"digest":
            return self._challenge(resp, v[1])
        return v

    def on_success(self, resp, now):
        self.now = now
        self._events(self.client.on_response(resp.status, resp, now))
        if self.auth is not None:
            self.auth.on_success()
