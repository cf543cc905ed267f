# Device configuration: load and validate the JSON of docs/config.md.
# validate() never raises on user data: it returns (cfg, problems), one line per problem,
# each saying where and what to do. Secrets are never echoed in a problem line.
import json

MECHANISMS = ("ipsec-3gpp", "ipsec-man", "digest", "tls")
IPSEC_MECHS = ("ipsec-3gpp", "ipsec-man")
ALGS = ("hmac-sha-1-96", "hmac-md5-96", "hmac-sha-256-128")
EALGS = ("null", "aes-cbc", "des-ede3-cbc")
CARRIERS = ("udp-encap", "raw")
LEVELS = ("debug", "info", "warn", "error")
DEFAULT_ALGS = [["hmac-sha-1-96", "aes-cbc"], ["hmac-sha-1-96", "null"]]

# Keys we know, top level and per section; anything else is reported (catches typos like
# "owner" or "require_ipsek", which would otherwise leave a safety switch at its default).
_KEYS = ("version", "board", "identity", "proxy", "local", "secagree", "ipsec", "ipsec_man",
         "owners", "control", "register", "log", "wifi")
_SECTION_KEYS = {
    "identity": ("aor", "auth_user", "password", "display"),
    "proxy": ("host", "port", "domain"),
    "local": ("host", "port_c", "port_s"),
    "secagree": ("mechanisms", "require_ipsec"),
    "ipsec": ("carrier", "encap_port", "peer_encap_port", "ik", "ck", "algs"),
    "ipsec_man": ("alg", "ealg", "ik", "ck", "spi_uc", "spi_us", "spi_pc", "spi_ps",
                  "port_uc", "port_us", "port_pc", "port_ps"),
    "control": ("digest_commands", "trust_from"),
    "register": ("expires", "keepalive"),
    "log": ("level", "trace_sip"),
    "wifi": ("ssid", "password"),
}


class ConfigError(Exception):
    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


class _V:
    # Collects problems; each check returns the (possibly defaulted) value.
    def __init__(self):
        self.problems = []

    def bad(self, where, what):
        self.problems.append("%s: %s" % (where, what))

    def section(self, cfg, key, required=True):
        v = cfg.get(key)
        if v is None:
            if required:
                self.bad(key, "missing; add the \"%s\" object (see docs/config.md)" % key)
            return {}
        if not isinstance(v, dict):
            self.bad(key, "must be an object {...}, got %s" % _tname(v))
            return {}
        known = _SECTION_KEYS[key]
        for k in v:
            if k not in known:
                self.bad("%s.%s" % (key, k), "unknown key; known keys are %s" % ", ".join(known))
        return v

    def string(self, sec, key, where, default=None, secret=False):
        v = sec.get(key, default)
        if v is None:
            self.bad(where, "missing; set it to a string")
            return ""
        if not isinstance(v, str) or not v:
            self.bad(where, "must be a non-empty string, got %s" % ("a secret of another type" if secret else _show(v)))
            return ""
        return v

    def integer(self, sec, key, where, lo, hi, default=None):
        v = sec.get(key, default)
        if v is None:
            self.bad(where, "missing; set a number from %d to %d" % (lo, hi))
            return lo
        if isinstance(v, bool) or not isinstance(v, int) or v < lo or v > hi:
            self.bad(where, "must be a whole number from %d to %d, got %s" % (lo, hi, _show(v)))
            return lo
        return v

    def boolean(self, sec, key, where, default):
        v = sec.get(key, default)
        if not isinstance(v, bool):
            self.bad(where, "must be true or false, got %s" % _show(v))
            return default
        return v

    def choice(self, sec, key, where, options, default=None):
        v = sec.get(key, default)
        if v not in options:
            self.bad(where, "must be one of %s, got %s" % (", ".join(options), _show(v)))
            return default if default is not None else options[0]
        return v

    def hexkey(self, sec, key, where, nbytes):
        v = sec.get(key)
        if not isinstance(v, str) or len(v) != 2 * nbytes or not _is_hex(v):
            # never echo the value: it is a key
            self.bad(where, "must be %d lower-case hex digits (a %d-byte key); run `sipling provision` to create one"
                     % (2 * nbytes, nbytes))
            return ""
        return v

    def sip_uri(self, v, where):
        if not isinstance(v, str) or not _is_sip_uri(v):
            self.bad(where, "must be a SIP URI like \"sip:alice@example.test\", got %s" % _show(v))
            return ""
        return v


def _tname(v):
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, dict):
        return "an object"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, str):
        return "a string"
    if v is None:
        return "null"
    return "a number"


def _show(v):
    if isinstance(v, str):
        return '"%s"' % (v if len(v) <= 40 else v[:37] + "...")
    if isinstance(v, (dict, list)) or v is None:
        return _tname(v)
    return str(v).lower() if isinstance(v, bool) else str(v)


def _is_hex(s):
    for c in s:
        if c not in "0123456789abcdef":
            return False
    return True


def _is_sip_uri(s):
    # RFC 3261 19.1.1: sip:user@host[:port]; we need the user@host part for owners/AOR
    low = s.lower()
    if not (low.startswith("sip:") or low.startswith("sips:")):
        return False
    rest = s[s.find(":") + 1:]
    user, at, host = rest.partition("@")
    return bool(at and user and host and " " not in rest)


def _is_ipv4(s):
    parts = s.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p or len(p) > 3 or not p.isdigit() or int(p) > 255:
            return False
    return True


def _host(v, sec, key, where, default=None):
    h = v.string(sec, key, where, default)
    if h and not _is_ipv4(h):
        v.bad(where, "must be an IPv4 address like 192.168.1.10, got %s (no DNS on the board)" % _show(h))
    return h


def validate(raw):
    """(cfg, problems): cfg is the config dict with defaults filled in."""
    v = _V()
    if not isinstance(raw, dict):
        v.bad("config", "must be a JSON object {...}, got %s" % _tname(raw))
        return {}, v.problems
    for k in raw:
        if k not in _KEYS:
            v.bad(k, "unknown key; known keys are %s" % ", ".join(_KEYS))
    cfg = {}
    ver = raw.get("version")
    if ver != 1:
        v.bad("version", "must be 1, got %s" % _show(ver))
    cfg["version"] = 1
    cfg["board"] = v.string(raw, "board", "board")

    ident = v.section(raw, "identity")
    aor = v.sip_uri(ident.get("aor"), "identity.aor")
    user = aor[aor.find(":") + 1:].partition("@")[0] if aor else ""
    sa = v.section(raw, "secagree", required=False)
    mechs = sa.get("mechanisms", ["ipsec-3gpp"])
    if not isinstance(mechs, list) or not mechs:
        v.bad("secagree.mechanisms", "must be a non-empty list drawn from %s" % ", ".join(MECHANISMS))
        mechs = []
    else:
        for m in mechs:
            if m not in MECHANISMS:
                v.bad("secagree.mechanisms", "unknown mechanism %s; use %s" % (_show(m), ", ".join(MECHANISMS)))
        if len(set(mechs)) != len(mechs):
            v.bad("secagree.mechanisms", "lists a mechanism twice")
    # secure by default: IPsec is required unless the config says otherwise, and a digest
    # listed while it is required is a contradiction, not something to ignore quietly
    req_ipsec = v.boolean(sa, "require_ipsec", "secagree.require_ipsec", True)
    if req_ipsec and mechs and not any(m in IPSEC_MECHS for m in mechs):
        v.bad("secagree.require_ipsec", "is true but secagree.mechanisms has no ipsec-3gpp or ipsec-man; add one "
              "or set require_ipsec to false (it is true unless the config says false)")
    elif req_ipsec and ("digest" in mechs or "tls" in mechs):
        v.bad("secagree.mechanisms", "lists %s but secagree.require_ipsec is true (the default); "
              "set \"require_ipsec\": false to allow it (`sipling provision --allow-digest`)"
              % " and ".join(m for m in mechs if m in ("digest", "tls")))
    cfg["secagree"] = {"mechanisms": [m for m in mechs if m in MECHANISMS], "require_ipsec": req_ipsec}

    cfg["identity"] = {
        "aor": aor,
        "auth_user": v.string(ident, "auth_user", "identity.auth_user", user or None) if aor or "auth_user" in ident else "",
        "password": (v.string(ident, "password", "identity.password", secret=True)
                     if "digest" in mechs or "password" in ident else ""),
        "display": ident.get("display", "") if isinstance(ident.get("display", ""), str) else "",
    }

    px = v.section(raw, "proxy")
    phost = _host(v, px, "host", "proxy.host")
    cfg["proxy"] = {"host": phost, "port": v.integer(px, "port", "proxy.port", 1, 65535, 5060),
                    "domain": v.string(px, "domain", "proxy.domain", phost or None)}

    lo = v.section(raw, "local", required=False)
    cfg["local"] = {"host": _host(v, lo, "host", "local.host", "0.0.0.0"),
                    "port_c": v.integer(lo, "port_c", "local.port_c", 1024, 65535, 5062),
                    "port_s": v.integer(lo, "port_s", "local.port_s", 1024, 65535, 5064)}
    if cfg["local"]["port_c"] == cfg["local"]["port_s"]:
        v.bad("local.port_s", "must differ from local.port_c (RFC 3329 Appendix A uses two ports)")

    if "ipsec-3gpp" in mechs or "ipsec" in raw:
        cfg["ipsec"] = _ipsec(v, v.section(raw, "ipsec"))
    if "ipsec-man" in mechs or "ipsec_man" in raw:
        cfg["ipsec_man"] = _ipsec_man(v, v.section(raw, "ipsec_man"))

    owners = raw.get("owners")
    if not isinstance(owners, list) or not owners:
        v.bad("owners", "must list at least one SIP URI allowed to control the board, e.g. [\"sip:alice@example.test\"]")
        owners = []
    cfg["owners"] = [v.sip_uri(o, "owners[%d]" % i) for i, o in enumerate(owners)]
    # both off by default: commands under a digest-only agreement (RFC 3329 digest protects
    # only our own requests, never the proxy's requests to us) and From as an identity
    # without an asserted one (RFC 3325 9.1) are lab settings, logged when on
    ct = v.section(raw, "control", required=False)
    cfg["control"] = {"digest_commands": v.boolean(ct, "digest_commands", "control.digest_commands", False),
                      "trust_from": v.boolean(ct, "trust_from", "control.trust_from", False)}

    reg = v.section(raw, "register", required=False)
    cfg["register"] = {"expires": v.integer(reg, "expires", "register.expires", 60, 86400, 600),
                       "keepalive": v.integer(reg, "keepalive", "register.keepalive", 0, 3600, 30)}
    lg = v.section(raw, "log", required=False)
    cfg["log"] = {"level": v.choice(lg, "level", "log.level", LEVELS, "info"),
                  "trace_sip": v.boolean(lg, "trace_sip", "log.trace_sip", False)}
    wf = v.section(raw, "wifi", required=False)
    if wf:
        cfg["wifi"] = {"ssid": v.string(wf, "ssid", "wifi.ssid"),
                       "password": wf.get("password", "") if isinstance(wf.get("password", ""), str) else ""}
    return cfg, v.problems


def _ipsec(v, s):
    out = {"carrier": v.choice(s, "carrier", "ipsec.carrier", CARRIERS, "udp-encap"),
           "encap_port": v.integer(s, "encap_port", "ipsec.encap_port", 1, 65535, 4500),
           "peer_encap_port": v.integer(s, "peer_encap_port", "ipsec.peer_encap_port", 1, 65535, 4500),
           "ik": v.hexkey(s, "ik", "ipsec.ik", 16), "ck": v.hexkey(s, "ck", "ipsec.ck", 16)}
    algs = s.get("algs", DEFAULT_ALGS)
    ok = []
    if not isinstance(algs, list) or not algs:
        v.bad("ipsec.algs", "must be a non-empty list of [alg, ealg] pairs, e.g. [[\"hmac-sha-1-96\", \"aes-cbc\"]]")
    else:
        for i, p in enumerate(algs):
            if not isinstance(p, list) or len(p) != 2 or p[0] not in ALGS or p[1] not in EALGS:
                v.bad("ipsec.algs[%d]" % i, "must be [alg, ealg] with alg in %s and ealg in %s, got %s"
                      % (", ".join(ALGS), ", ".join(EALGS), _show(p) if not isinstance(p, list) else str(p)))
            else:
                ok.append(p)
    out["algs"] = ok
    return out


def _ipsec_man(v, s):
    w = "ipsec_man."
    out = {"alg": v.choice(s, "alg", w + "alg", ALGS, "hmac-sha-1-96"),
           "ealg": v.choice(s, "ealg", w + "ealg", EALGS, "null"),
           "ik": v.hexkey(s, "ik", w + "ik", 16),
           "ck": v.hexkey(s, "ck", w + "ck", 16)}  # des-ede3-cbc uses CK1||CK2||CK1 (DESIGN.md 4)
    for k in ("spi_uc", "spi_us", "spi_pc", "spi_ps"):
        out[k] = v.integer(s, k, w + k, 256, 0xFFFFFFFF)  # RFC 4303 2.1: SPIs 1..255 are reserved
    for k in ("port_uc", "port_us", "port_pc", "port_ps"):
        out[k] = v.integer(s, k, w + k, 1, 65535)
    return out


def loads(text):
    """(cfg, problems) from JSON text (bytes or str)."""
    try:
        raw = json.loads(text)
    except ValueError as e:
        return {}, ["config: not valid JSON (%s); check commas, quotes and braces" % (e.args[0] if e.args else "syntax error")]
    return validate(raw)


def load(path):
    """(cfg, problems) from a file; a missing file is one problem, not an exception."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return {}, ["config: cannot read %s; provision the board (`sipling provision`) or pass --config FILE" % path]
    cfg, problems = loads(text)
    return cfg, ["%s: %s" % (path, p) for p in problems]
