# Local security policy for RFC 3329 agreement (DESIGN.md 4, client rule 6; RFC 3329
# section 2.3.1 "The user MAY decline to accept a particular security mechanism" and
# section 5 "MUST select HTTP Digest, TLS, IPsec, or any stronger method").
# Built from the device config (docs/config.md); no I/O.

from micropython import const

IPSEC_3GPP = b"ipsec-3gpp"
IPSEC_MAN = b"ipsec-man"
DIGEST = b"digest"
TLS = b"tls"
IPSEC_IKE = b"ipsec-ike"

# Offer order when the config does not give one: strongest first.
KNOWN = (IPSEC_3GPP, IPSEC_MAN, TLS, DIGEST)
IPSEC_MECHS = (IPSEC_3GPP, IPSEC_MAN)

# What our ESP (sipling.esp: hashlib HMACs, cryptolib AES-CBC, its own 3DES) can run.
# RFC 3329 Appendix A names hmac-md5-96, hmac-sha-1-96, des-ede3-cbc and null; TS 33.203
# adds aes-cbc; hmac-sha-256-128 (RFC 4868) is what sipling.esp and sipling.config also
# accept. Which pairs are offered is the config's choice (ipsec.algs).
ALGS = (b"hmac-sha-1-96", b"hmac-md5-96", b"hmac-sha-256-128")
EALGS = (b"aes-cbc", b"des-ede3-cbc", b"null")
# RFC 2617 3.2.1 algorithm values (d-alg) and qop values (d-qop) we can compute.
D_ALGS = (b"md5", b"md5-sess")
D_QOPS = (b"auth", b"auth-int")

_DEF_PORT_C_SPAN = const(8)
_DEF_RETRIES = const(4)
_DEF_BACKOFF_MS = const(1000)
_DEF_BACKOFF_MAX_MS = const(60000)


class PolicyError(ValueError):
    def __init__(self, msg):
        super().__init__(msg)


def _b(x):
    return x if isinstance(x, bytes) else str(x).encode()


class Policy:
    """mechanisms: allowed names in offer order; require_ipsec: only ipsec-3gpp/ipsec-man
    may be agreed; ipsec_algs: (alg, ealg) pairs we run and offer (one Security-Client line
    each); ipsec_man: provisioned manual SAs exist; digest: credentials exist; tls: a TLS
    transport exists (never true until it is built). port_c/port_s: our protected ports;
    port_c_span: port-c is taken fresh from [port_c, port_c + span), never port_s, on every offer."""

    def __init__(self, mechanisms=KNOWN, require_ipsec=False, ipsec_algs=(), ipsec_man=False,
                 digest=False, tls=False, port_c=5062, port_s=5064, port_c_span=_DEF_PORT_C_SPAN,
                 max_retries=_DEF_RETRIES, backoff_ms=_DEF_BACKOFF_MS,
                 backoff_max_ms=_DEF_BACKOFF_MAX_MS):
        self.mechanisms = tuple(_b(m).lower() for m in mechanisms)
        self.require_ipsec = bool(require_ipsec)
        pairs = []
        for a, e in ipsec_algs:
            a = _b(a).lower()
            e = _b(e).lower()
            if a not in ALGS or e not in EALGS:
                raise PolicyError("ipsec alg pair %s/%s is not supported" % (a.decode(), e.decode()))
            if (a, e) not in pairs:
                pairs.append((a, e))
        self.ipsec_algs = tuple(pairs)
        self.ipsec_man = bool(ipsec_man)
        self.digest = bool(digest)
        self.tls = bool(tls)
        self.port_c = int(port_c)
        self.port_s = int(port_s)
        self.port_c_span = int(port_c_span)
        usable = self.port_c_span - (1 if self.port_c <= self.port_s < self.port_c + self.port_c_span else 0)
        if usable < 2:
            raise PolicyError("port-c range needs 2 ports besides port_s so every offer gets a fresh port-c")
        if not (0 < self.port_c and self.port_c + self.port_c_span <= 65536 and 0 < self.port_s < 65536):
            raise PolicyError("ports out of range")
        self.max_retries = int(max_retries)
        self.backoff_ms = int(backoff_ms)
        self.backoff_max_ms = int(backoff_max_ms)
        if not self.offered():
            raise PolicyError("no security mechanism is both allowed and runnable; "
                              "the device never runs without protection")

    def runnable(self, name):
        if name == IPSEC_3GPP:
            return bool(self.ipsec_algs)
        if name == IPSEC_MAN:
            return self.ipsec_man
        if name == DIGEST:
            return self.digest
        if name == TLS:
            return self.tls
        return False

    def refusal(self, name):
        """None if `name` may be agreed, else the reason it is refused (for the log)."""
        if name not in KNOWN:
            return "not implemented"
        if name not in self.mechanisms:
            return "not allowed by config"
        if self.require_ipsec and name not in IPSEC_MECHS:
            return "policy requires ipsec"
        if not self.runnable(name):
            return "not provisioned on this device"
        return None

    def offered(self):
        """Mechanism names for Security-Client, in config order (RFC 3329 2.3.1: every
        mechanism the client supports; we list only those policy would also accept)."""
        return [m for m in self.mechanisms if self.refusal(m) is None]


def from_config(cfg):
    """Policy from the device config dict (docs/config.md)."""
    sa = cfg.get("secagree", {})
    ipsec = cfg.get("ipsec") or {}
    local = cfg.get("local", {})
    ident = cfg.get("identity", {})
    algs = ipsec.get("algs", ()) if ipsec.get("ik") else ()
    return Policy(
        mechanisms=sa.get("mechanisms", [m.decode() for m in KNOWN]),
        require_ipsec=sa.get("require_ipsec", True),  # secure by default (config.py)
        ipsec_algs=algs,
        ipsec_man=bool(cfg.get("ipsec_man")),
        digest=bool(ident.get("password")),
        tls=sa.get("tls", False),
        port_c=local.get("port_c", 5062),
        port_s=local.get("port_s", 5064),
        port_c_span=sa.get("port_c_span", _DEF_PORT_C_SPAN),
        max_retries=sa.get("max_retries", _DEF_RETRIES),
        backoff_ms=sa.get("backoff_ms", _DEF_BACKOFF_MS),
        backoff_max_ms=sa.get("backoff_max_ms", _DEF_BACKOFF_MAX_MS),
    )
