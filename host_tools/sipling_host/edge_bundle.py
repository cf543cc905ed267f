"""Proxy-side bundles for `sipling edge`: one JSON file per device, reloaded without restart.

A bundle is what `sipling provision` writes for the proxy host (docs/edge.md). The edge also
accepts a device config (docs/config.md) as a bundle, since it holds the same secrets; then
the device's `identity`, `ipsec`, `ipsec_man` and `local` sections are read.

Bundle fields (all hex lower-case, no 0x)::

    {"version": 1, "aor": "sip:door@example.test", "auth_user": "door", "password": "...",
     "ipsec": {"carrier": "udp-encap", "ik": "<32 hex>", "ck": "<32 hex>",
               "algs": [["hmac-sha-1-96", "aes-cbc"], ...],
               "peer_host": "127.0.0.1", "peer_encap_port": 4501},
     "ipsec_man": {"alg": ..., "ealg": ..., "ik": ..., "ck": ...,
                   "spi_uc": 1001, "spi_us": 1002, "spi_pc": 2001, "spi_ps": 2002,
                   "port_uc": 5062, "port_us": 5064, "port_pc": 5066, "port_ps": 5068}}

Secrets never appear in ``repr()`` or in an error line.
"""
import json
import os

_ALGS = ("hmac-sha-1-96", "hmac-md5-96", "hmac-sha-256-128")
_EALGS = ("null", "aes-cbc", "des-ede3-cbc")
_MAN_INTS = ("spi_uc", "spi_us", "spi_pc", "spi_ps", "port_uc", "port_us", "port_pc", "port_ps")


class BundleError(Exception):
    pass


class Device:
    """One device as the edge knows it from its bundle (secrets as bytes, never printed)."""

    def __init__(self, name, aor, user, password, ik, ck, algs, man, peer_host, peer_encap_port,
                 carrier):
        self.name = name
        self.aor = aor
        self.user = user
        self.password = password
        self.ik = ik
        self.ck = ck
        self.algs = algs            # [(alg, ealg)] offered for ipsec-3gpp, edge preference order
        self.man = man              # dict for ipsec-man (keys as bytes) or None
        self.peer_host = peer_host  # where to send ESP before the device's first packet
        self.peer_encap_port = peer_encap_port
        self.carrier = carrier

    def same_secrets(self, other):
        return (self.password, self.ik, self.ck, self.algs, self.man) == (
            other.password, other.ik, other.ck, other.algs, other.man)

    def __repr__(self):
        return "<Device %s %s>" % (self.name, self.aor)


def _hexkey(v, where, nbytes=None):
    if not isinstance(v, str) or len(v) % 2 or (nbytes and len(v) != 2 * nbytes):
        raise BundleError("%s: must be %s hex digits" % (where, 2 * nbytes if nbytes else "an even number of"))
    try:
        return bytes.fromhex(v)
    except ValueError:
        raise BundleError("%s: must be hex digits" % where) from None


def _user_of(aor):
    rest = aor.partition(":")[2]
    return rest.partition("@")[0]


def parse_bundle(name, raw):
    """A :class:`Device` from the JSON object of a bundle or a device config."""
    if not isinstance(raw, dict):
        raise BundleError("not a JSON object")
    # provision.py's bundle keeps the identity under "device", a device config under "identity"
    ident = raw.get("device") if isinstance(raw.get("device"), dict) else (
        raw.get("identity") if isinstance(raw.get("identity"), dict) else raw)
    aor = ident.get("aor")
    if not isinstance(aor, str) or not aor.lower().startswith(("sip:", "sips:")) or "@" not in aor:
        raise BundleError("aor: must be a SIP URI like sip:door@example.test")
    user = ident.get("auth_user") or _user_of(aor)
    password = ident.get("password") or ""
    mechs = raw.get("mechanisms") or (raw.get("secagree") or {}).get("mechanisms")
    ip = raw.get("ipsec") or {}
    ik = ck = None
    algs = []
    if (ip.get("ik") or ip.get("ck")) and (mechs is None or "ipsec-3gpp" in mechs):
        ik = _hexkey(ip.get("ik"), "ipsec.ik", 16)
        ck = _hexkey(ip.get("ck"), "ipsec.ck", 16)
        for pair in ip.get("algs") or [["hmac-sha-1-96", "aes-cbc"], ["hmac-sha-1-96", "null"]]:
            if (not isinstance(pair, list) or len(pair) != 2 or pair[0] not in _ALGS
                    or pair[1] not in _EALGS):
                raise BundleError("ipsec.algs: each entry must be [alg, ealg] with alg in %s and ealg in %s"
                                  % ("/".join(_ALGS), "/".join(_EALGS)))
            algs.append((pair[0], pair[1]))
    man = None
    m = raw.get("ipsec_man")
    if isinstance(m, dict) and m and (mechs is None or "ipsec-man" in mechs):
        man = {"alg": m.get("alg", "hmac-sha-1-96"), "ealg": m.get("ealg", "null")}
        if man["alg"] not in _ALGS or man["ealg"] not in _EALGS:
            raise BundleError("ipsec_man: alg/ealg not supported")
        man["ik"] = _hexkey(m.get("ik"), "ipsec_man.ik")
        man["ck"] = _hexkey(m.get("ck", ""), "ipsec_man.ck") if man["ealg"] != "null" else b""
        for k in _MAN_INTS:
            v = m.get(k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v > 0xFFFFFFFF:
                raise BundleError("ipsec_man.%s: must be a whole number" % k)
            man[k] = v
    if ik is None and man is None:
        raise BundleError("no keys: needs ipsec.ik/ck (ipsec-3gpp) or ipsec_man")
    local = raw.get("local") or {}
    peer_host = ip.get("peer_host") or ident.get("host") or local.get("host") or "127.0.0.1"
    # the device's own encapsulation port: `encap_port` in a device config or a provision
    # bundle (a copy of the device's ipsec section); `peer_encap_port` in a hand-made bundle
    if "identity" in raw or "device" in raw:
        peer_port = ip.get("encap_port")
    else:
        peer_port = ip.get("peer_encap_port")
    carrier = "raw" if ip.get("carrier") in ("raw", "esp") else "udp-encap"
    return Device(name, aor, user, password, ik, ck, algs, man, peer_host, peer_port or 4500, carrier)


def load_file(path):
    name = os.path.splitext(os.path.basename(path))[0]
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:
        raise BundleError("cannot read: %s" % (e.__class__.__name__,)) from None
    return parse_bundle(name, raw)


class BundleStore:
    """The devices of one directory of ``*.json`` bundles; :meth:`scan` picks up changes.

    A bundle that fails to load is reported and the previous good version (if any) kept.
    """

    def __init__(self, path, log=None):
        self.path = path
        self.devices = {}   # name -> Device
        self._stamp = {}    # name -> (mtime_ns, size)
        self._log = log or (lambda line: None)

    def by_aor(self, aor):
        key = _aor_key(aor)
        for d in self.devices.values():
            if _aor_key(d.aor) == key:
                return d
        return None

    def scan(self, force=False):
        """Reload changed files; returns (added, changed, removed) lists of names."""
        added, changed, removed = [], [], []
        try:
            names = sorted(n for n in os.listdir(self.path) if n.endswith(".json"))
        except OSError as e:
            self._log("bundles: cannot list %s (%s)" % (self.path, e.strerror))
            return added, changed, removed
        seen = set()
        for fn in names:
            full = os.path.join(self.path, fn)
            name = fn[:-5]
            seen.add(name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            stamp = (st.st_mtime_ns, st.st_size)
            if not force and self._stamp.get(name) == stamp:
                continue
            self._stamp[name] = stamp
            try:
                dev = load_file(full)
            except BundleError as e:
                self._log("bundle %s: %s; keeping the previous version" % (fn, e))
                continue
            old = self.devices.get(name)
            if old is None:
                added.append(name)
            elif not old.same_secrets(dev) or old.aor != dev.aor:
                changed.append(name)
            else:
                continue  # same content (touched, or a forced rescan): keep the object in use
            self.devices[name] = dev
        for name in list(self.devices):
            if name not in seen:
                del self.devices[name]
                self._stamp.pop(name, None)
                removed.append(name)
        return added, changed, removed


def _aor_key(aor):
    # sip:User@Host;params -> user@host (host case-insensitive, RFC 3261 19.1.4)
    rest = aor.partition(":")[2].split(";")[0].strip("<>")
    user, _, host = rest.partition("@")
    return user + "@" + host.lower().split(":")[0]
