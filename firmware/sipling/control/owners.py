# Who is asking: the identity of a control request and whether it is an owner.
# RFC 3325 section 9.1: P-Asserted-Identity is believed only from a trusted entity; for us
# that is the first-hop proxy (the edge), over the agreed IPsec protection. From is claimed
# by the sender, never authenticated: it counts only with the lab switch control.trust_from.
# Comparison (RFC 3261 section 19.1.4): user part case-sensitive, host case-insensitive;
# parameters, port, display name and scheme (sip/sips) do not matter for an owner.


def addr_spec(value):
    """The URI of a name-addr / addr-spec header value (bytes), without header params."""
    v = value.strip()
    lt = v.find(b"<")
    if lt >= 0:
        gt = v.find(b">", lt)
        return v[lt + 1:gt] if gt > lt else v[lt + 1:]
    # addr-spec form: header params follow ';' (RFC 3261 20.20), the URI has none then
    return v.split(b";")[0].strip()


def key(uri):
    """'user@host' (host lower-case) for a sip:/sips: URI (bytes or str), or None."""
    if isinstance(uri, str):
        uri = uri.encode()
    u = uri.strip()
    colon = u.find(b":")
    if colon < 0 or u[:colon].lower() not in (b"sip", b"sips"):
        return None
    rest = u[colon + 1:]
    for sep in (b";", b"?", b">"):
        rest = rest.split(sep)[0]
    user, at, host = rest.rpartition(b"@")
    if not at or not user or not host:
        return None
    host = host.split(b":")[0].lower()
    try:
        return (user + b"@" + host).decode()
    except UnicodeError:
        return None


class Owners:
    def __init__(self, uris):
        self.keys = []
        for u in uris:
            k = key(u)
            if k and k not in self.keys:
                self.keys.append(k)
        self.uris = list(uris)

    def identity(self, msg, trusted, trust_from=False):
        """(key, source): source is 'pai', 'from' or 'none' (no identity we may believe);
        key None when there is none or it is unreadable."""
        if trusted:
            for v in msg.get_all("P-Asserted-Identity") or ():
                # several PAIs may be present (sip + tel): take the first sip/sips one
                for part in v.split(b","):
                    k = key(addr_spec(part))
                    if k:
                        return k, "pai"
        if not trust_from:
            return None, "none"
        f = msg.get("From")
        if f is None:
            return None, "from"
        return key(addr_spec(f)), "from"

    def allowed(self, k):
        return k is not None and k in self.keys
