# SIP digest authentication, client side (RFC 3261 section 22, RFC 2617, RFC 7616, RFC 8760).
# Pure functions over bytes plus one small state object (DigestAuth) that answers 401/407
# challenges, counts nc per nonce and knows when to give up. No I/O: the caller injects the
# random source used for cnonce values.
import binascii
import hashlib

from micropython import const

AUTH_RETRY = const(0)        # resend the request with the new credentials
AUTH_FAILED = const(1)       # credentials rejected (wrong username/password) or server loops
AUTH_UNSUPPORTED = const(2)  # no Digest challenge with an algorithm we implement
AUTH_NAMES = ("retry", "failed", "unsupported")

_MAX_STALE = const(3)  # consecutive stale=true answers before we call it a loop

# RFC 7616 section 3.7 / RFC 8760 section 2: client prefers the strongest algorithm.
# value = (hash constructor name, strength); -sess variants rank just below their base.
_ALGS = {
    b"md5": (b"MD5", 10),
    b"md5-sess": (b"MD5-sess", 9),
    b"sha-256": (b"SHA-256", 30),
    b"sha-256-sess": (b"SHA-256-sess", 29),
}


class DigestError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def _lower(b):
    return bytes(b).lower()


def canonical_alg(alg):
    """Canonical spelling of a supported algorithm token (case-insensitive), else None."""
    if alg is None:
        return b"MD5"  # RFC 2617 3.2.1: absent algorithm means MD5
    e = _ALGS.get(_lower(alg))
    return e[0] if e else None


def _hash(alg):
    a = _lower(alg)
    if a.startswith(b"sha-256"):
        return hashlib.sha256()
    if a.startswith(b"md5"):
        return hashlib.md5()
    raise DigestError("unsupported digest algorithm %r" % (alg,))


def H(alg, data):
    """RFC 7616 3.4 H(data): lower-case hex of the algorithm's hash (bytes)."""
    h = _hash(alg)
    h.update(data)
    return binascii.hexlify(h.digest())


def KD(alg, secret, data):
    """RFC 2617 3.2.1 / RFC 7616 3.4: KD(secret, data) = H(secret ":" data)."""
    return H(alg, b":".join((secret, data)))


def ha1(alg, username, realm, password, nonce=b"", cnonce=b""):
    """H(A1), RFC 7616 3.4.2: A1 = user:realm:pass; -sess: H(user:realm:pass):nonce:cnonce."""
    h = H(alg, b":".join((username, realm, password)))
    if _lower(alg).endswith(b"-sess"):
        return H(alg, b":".join((h, nonce, cnonce)))
    return h


def ha2(alg, method, uri, qop=None, body=b""):
    """H(A2), RFC 7616 3.4.3: A2 = method:uri, or method:uri:H(body) for qop=auth-int."""
    if qop is not None and _lower(qop) == b"auth-int":
        return H(alg, b":".join((method, uri, H(alg, body))))
    return H(alg, b":".join((method, uri)))


def response_digest(alg, h1, nonce, nc=None, cnonce=None, qop=None, h2=b""):
    """request-digest, RFC 2617 3.2.2.1 / RFC 7616 3.4.1. With qop:
    KD(H(A1), nonce:nc:cnonce:qop:H(A2)); without (RFC 2069 compatibility): KD(H(A1), nonce:H(A2)).
    nc is the 8-hex-digit bytes value. RFC 3329 2.2 d-ver reuses this with its own A2."""
    if qop is None:
        return KD(alg, h1, b":".join((nonce, h2)))
    return KD(alg, h1, b":".join((nonce, nc, cnonce, qop, h2)))


def nc_value(n):
    """nc-value = 8LHEX (RFC 2617 3.2.2)."""
    return b"%08x" % n


# --- parsing -------------------------------------------------------------------------
# RFC 3261 25.1:  challenge = ("Digest" LWS digest-cln *(COMMA digest-cln)) / other-challenge
#   auth-param = auth-param-name EQUAL ( token / quoted-string )
# RFC 7235 2.1 allows several challenges in one field value; a new one starts where a list
# item is `token 1*SP token "="` or a bare token.

_WS = b" \t\r\n"


def _skip_ws(s, i):
    n = len(s)
    while i < n and s[i] in _WS:
        i += 1
    return i


def _token_end(s, i):
    n = len(s)
    while i < n and s[i] not in b" \t\r\n,=\";":
        i += 1
    return i


def _quoted(s, i):
    # quoted-string = SWS DQUOTE *(qdtext / quoted-pair) DQUOTE  (RFC 3261 25.1); s[i] == '"'
    out = []
    i += 1
    n = len(s)
    start = i
    while i < n:
        c = s[i]
        if c == 0x5C:  # backslash: quoted-pair
            if i + 1 >= n:
                break
            out.append(s[start:i])
            start = i + 1
            i += 2
            continue
        if c == 0x22:
            out.append(s[start:i])
            return b"".join(out), i + 1
        i += 1
    raise DigestError("unterminated quoted-string in challenge")


def parse_challenges(value):
    """Parse one WWW-/Proxy-Authenticate field value into a list of (scheme, params):
    scheme lower-cased bytes, params dict of lower-cased name -> unquoted bytes value."""
    s = bytes(value)
    out = []
    i = _skip_ws(s, 0)
    n = len(s)
    params = None
    while i < n:
        j = _token_end(s, i)
        if j == i:
            if s[i] == 0x2C:  # empty list element
                i = _skip_ws(s, i + 1)
                continue
            raise DigestError("bad character %r in challenge at %d" % (s[i:i + 1], i))
        tok = s[i:j]
        k = _skip_ws(s, j)
        if k < n and s[k] == 0x3D:  # auth-param
            if params is None:
                raise DigestError("auth-param before auth-scheme")
            k = _skip_ws(s, k + 1)
            if k < n and s[k] == 0x22:
                v, k = _quoted(s, k)
            else:
                e = _token_end(s, k)
                v = s[k:e]
                k = e
            name = _lower(tok)
            if name in params:
                raise DigestError("duplicate parameter %s" % name.decode())
            params[name] = v
            k = _skip_ws(s, k)
            if k < n:
                if s[k] != 0x2C:
                    raise DigestError("expected ',' in challenge at %d" % k)
                k += 1
        else:  # a new auth-scheme
            params = {}
            out.append((_lower(tok), params))
            if k < n and s[k] == 0x2C:
                k += 1
        i = _skip_ws(s, k)
    return out


def choose(values, algorithm=None):
    """Pick, per realm, the strongest supported Digest challenge from a list of field values
    (RFC 7616 3.7, RFC 8760 2.4: ties go to the topmost). `algorithm` forces one (RFC 3329
    d-alg). Returns a list of params dicts (one per realm, in first-seen order)."""
    best = {}
    order = []
    err = None
    for v in values:
        try:
            chs = parse_challenges(v)
        except DigestError as e:  # e.g. a token68 scheme we do not speak: skip that field
            err = e
            continue
        for scheme, p in chs:
            if scheme != b"digest" or b"nonce" not in p or b"realm" not in p:
                continue
            alg = canonical_alg(p.get(b"algorithm"))
            if alg is None:
                continue
            if algorithm is not None and _lower(alg) != _lower(algorithm):
                continue
            realm = p[b"realm"]
            rank = _ALGS[_lower(alg)][1]
            cur = best.get(realm)
            if cur is None:
                order.append(realm)
            if cur is None or rank > cur[0]:
                best[realm] = (rank, p)
    if not order and err is not None:
        raise err
    return [best[r][1] for r in order]


# --- building credentials ---------------------------------------------------------

def _q(v):
    # quoted-string with quoted-pair for '"' and '\' (RFC 3261 25.1)
    return b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def pick_qop(offered, body=b"", force=None):
    """qop to answer with: forced (RFC 3329 d-qop), else 'auth' if offered, else 'auth-int',
    else None (RFC 2069 compatibility, no qop in the challenge)."""
    if force is not None:
        return force
    if offered is None:
        return None
    opts = [_lower(x.strip()) for x in offered.split(b",")]
    if b"auth" in opts:
        return b"auth"
    if b"auth-int" in opts:
        return b"auth-int"
    raise DigestError("no supported qop in %r" % (offered,))


def authorization(ch, username, password, method, uri, body=b"", nc=1, cnonce=None,
                  algorithm=None, qop=None):
    """Credentials value (after the header name) answering challenge params `ch` (RFC 3261
    22.2/22.3, RFC 2617 3.2.2). algorithm/qop override the challenge (sec-agree d-alg/d-qop)."""
    alg = canonical_alg(algorithm if algorithm is not None else ch.get(b"algorithm"))
    if alg is None:
        raise DigestError("unsupported digest algorithm")
    q = pick_qop(ch.get(b"qop"), body, qop)
    nonce = ch[b"nonce"]
    realm = ch[b"realm"]
    if q is None and _lower(alg).endswith(b"-sess"):
        raise DigestError("%s needs a qop (cnonce)" % alg.decode())
    if q is not None and not cnonce:
        raise DigestError("qop needs a cnonce")
    ncv = nc_value(nc)
    h1 = ha1(alg, username, realm, password, nonce, cnonce or b"")
    h2 = ha2(alg, method, uri, q, body)
    resp = response_digest(alg, h1, nonce, ncv, cnonce, q, h2)
    parts = [b"Digest username=" + _q(username), b"realm=" + _q(realm), b"nonce=" + _q(nonce),
             b"uri=" + _q(uri), b"response=" + _q(resp), b"algorithm=" + alg]
    if q is not None:
        parts.append(b"cnonce=" + _q(cnonce))
    if b"opaque" in ch:
        parts.append(b"opaque=" + _q(ch[b"opaque"]))  # RFC 2617 3.2.2: echoed unchanged
    if q is not None:
        parts.append(b"qop=" + q)
        parts.append(b"nc=" + ncv)
    return b", ".join(parts)


# --- state ----------------------------------------------------------------------------

_HDR = {401: (b"WWW-Authenticate", b"Authorization"),
        407: (b"Proxy-Authenticate", b"Proxy-Authorization")}


class DigestAuth:
    """Client credentials for one account. on_challenge(status, values) -> AUTH_*;
    credentials(method, uri, body) -> [(header name, value)] for the next request.
    rand(n) -> n random bytes (injected; cnonce source). `reason` says why (no secrets)."""

    def __init__(self, username, password, rand, algorithm=None, qop=None):
        self.username = username
        self._password = password
        self._rand = rand
        self.algorithm = algorithm  # forced (sec-agree d-alg)
        self.qop = qop              # forced (sec-agree d-qop)
        self.reason = ""
        self._st = {}  # (status, realm) -> [params, nc, cnonce, answered, stales, rejects]

    def _cnonce(self):
        return binascii.hexlify(self._rand(8))

    def on_challenge(self, status, values):
        """Process a 401 (WWW-Authenticate values) or 407 (Proxy-Authenticate values)."""
        if status not in _HDR:
            raise DigestError("not a challenge status: %d" % status)
        try:
            chosen = choose(values, self.algorithm)
        except DigestError as e:
            self.reason = "malformed challenge: %s" % e
            return AUTH_UNSUPPORTED
        if not chosen:
            self.reason = "%d without a Digest challenge we support" % status
            return AUTH_UNSUPPORTED
        for p in chosen:
            try:  # can we answer it? (qop we speak; -sess needs a qop)
                q = pick_qop(p.get(b"qop"), b"", self.qop)
                alg = canonical_alg(self.algorithm or p.get(b"algorithm"))
                if q is None and _lower(alg).endswith(b"-sess"):
                    raise DigestError("%s without qop" % alg.decode())
            except DigestError as e:
                self.reason = "cannot answer the challenge of realm %s: %s" % (
                    p[b"realm"].decode(), e)
                return AUTH_UNSUPPORTED
        for p in chosen:
            realm = p[b"realm"]
            key = (status, realm)
            old = self._st.get(key)
            stale = _lower(p.get(b"stale", b"")) == b"true"
            st = [p, 0, self._cnonce(), False, 0, 0]
            if old is not None and old[3]:
                who = (realm.decode(), self.username.decode())
                if old[0][b"nonce"] == p[b"nonce"]:
                    self.reason = "realm %s rejected the credentials of %s (same nonce challenged twice)" % who
                    return AUTH_FAILED
                st[4] = old[4]
                if stale:  # RFC 2617 3.2.1: the digest was right, the nonce old: retry, bounded
                    st[4] = old[4] + 1
                    if st[4] > _MAX_STALE:
                        self.reason = "realm %s answered stale=true %d times" % (who[0], st[4])
                        return AUTH_FAILED
                else:
                    # No stale=true: RFC 2617 3.2.1 reads this as bad credentials, but servers
                    # that let a nonce expire without saying stale exist (Kamailio with plain
                    # www_challenge), so a fresh nonce earns one more try, not two in a row.
                    st[5] = old[5] + 1
                    if st[5] > 1:
                        self.reason = "realm %s rejected the credentials of %s twice (no stale=true)" % who
                        return AUTH_FAILED
            self._st[key] = st
        self.reason = "challenged by %d, retrying" % status
        return AUTH_RETRY

    def on_success(self):
        """A request carrying our credentials succeeded: the next challenge is a fresh start."""
        for st in self._st.values():
            st[3] = False
            st[4] = st[5] = 0

    def credentials(self, method, uri, body=b""):
        """[(header name, value)] for every realm we hold a challenge for; counts nc."""
        out = []
        for key in self._st:
            st = self._st[key]
            st[1] += 1
            st[3] = True
            v = authorization(st[0], self.username, self._password, method, uri, body,
                              st[1], st[2], self.algorithm, self.qop)
            out.append((_HDR[key[0]][1], v))
        return out

    # -- conveniences over sipling.sip.message.Message ------------------------------------
    def on_response(self, resp):
        """on_challenge() for a parsed 401/407 response (its WWW-/Proxy-Authenticate fields)."""
        h = _HDR.get(resp.status)
        if h is None:
            raise DigestError("not a challenge status: %r" % (resp.status,))
        return self.on_challenge(resp.status, resp.get_all(h[0]))

    def apply(self, req):
        """Put fresh credentials into request `req` (replacing earlier ones); the digest-uri
        is its Request-URI and auth-int hashes its body (RFC 3261 22.4). The caller gives the
        request a new CSeq and branch as for any new request (RFC 3261 22.2)."""
        for name in (b"Authorization", b"Proxy-Authorization"):
            req.remove(name)
        for name, value in self.credentials(req.method, req.uri, req.body):
            req.add(name, value)
        return req
