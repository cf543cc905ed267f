# Security associations and the SA database (RFC 4301 section 4.4.2 SAD, reduced to what
# sipling needs): look-up by SPI for inbound packets, the four SAs of an ipsec-3gpp pair
# (TS 33.203 section 7; table in DESIGN.md section 4), manual SAs for ipsec-man,
# lifetimes against the caller's now_ms, removal, and re-keying with a grace period.
# Sans-IO: the RNG (for IV keys) and the sequence-number store are supplied by the shell.
from micropython import const

from . import cipher, integ, replay, seq

_ESP_HDR = const(8)  # SPI + sequence number (RFC 4303 section 2)
DEFAULT_MTU = const(1500)

# Inbound drop reasons (index into SADB.drops).
UNKNOWN_SPI = const(0)
BAD_ICV = const(1)
REPLAY = const(2)
BAD_PAD = const(3)
TOO_SHORT = const(4)
BAD_INNER = const(5)
DROP_NAMES = ("unknown_spi", "bad_icv", "replay", "bad_pad", "too_short", "bad_inner")


class EspError(Exception):
    def __init__(self, msg):
        super().__init__(msg)


def expand_keys(alg, ealg, ik, ck):
    """3GPP key expansion (TS 33.203 annex I; DESIGN.md section 4) -> (auth key, enc key).

    hmac-sha-1-96: IK + 4 zero bytes; hmac-md5-96: IK; hmac-sha-256-128 (not in 33.203):
    IK zero-padded to 32 bytes by the same rule. aes-cbc: CK; des-ede3-cbc: CK1||CK2||CK1.
    """
    ik = bytes(ik) if ik is not None else b""
    ck = bytes(ck) if ck is not None else b""
    if alg == "hmac-sha-1-96":
        akey = ik + bytes(4)
    elif alg == "hmac-sha-256-128":
        akey = ik + bytes(32 - len(ik)) if len(ik) < 32 else ik
    elif alg in ("hmac-md5-96", "null"):
        akey = ik
    else:
        raise EspError("unknown alg " + str(alg))
    if ealg == "aes-cbc":
        ekey = ck
    elif ealg == "des-ede3-cbc":
        ekey = ck + ck[:8] if len(ck) == 16 else ck
    elif ealg == "null":
        ekey = b""
    else:
        raise EspError("unknown ealg " + str(ealg))
    return akey, ekey


class SA:
    """One direction of protection. Outbound SAs build packets in .buf; inbound SAs
    hold the last accepted payload in .buf[rx_off:rx_off+rx_len], next header rx_nh."""

    def __init__(self, spi, inbound, alg, akey, ealg, ekey, sport, dport, seed,
                 mtu=DEFAULT_MTU, window=replay.DEFAULT_SIZE, counter=None, name=""):
        if not 0 <= spi <= 0xFFFFFFFF:
            raise EspError("spi out of range")
        if 0 < spi < 256:
            raise EspError("spi 1..255 is reserved (RFC 4303 section 2.1)")
        if alg == "null" and ealg == "null":
            raise EspError("ESP with null integrity and null encryption protects nothing (RFC 4303 3.2)")
        self.spi = spi
        self.inbound = inbound
        self.name = name
        self.alg = alg
        self.ealg = ealg
        self.auth = integ.make(alg, akey)
        self.enc = cipher.make(ealg, ekey, seed)
        self.sport = sport  # inner UDP ports this SA carries (DESIGN.md table)
        self.dport = dport
        self.payload_off = _ESP_HDR + self.enc.iv_len
        self.buf = bytearray(mtu)
        self.mv = memoryview(self.buf)
        self.expires_ms = None
        self.packets = 0
        self.bytes = 0
        self.rx_off = 0
        self.rx_len = 0
        self.rx_nh = 0
        if inbound:
            self.window = replay.Window(window)
            self.counter = None
        else:
            self.window = None
            self.counter = counter or seq.Counter()

    def __repr__(self):  # never shows keys
        return "<SA %s spi=0x%08x %s %s/%s %d->%d>" % (
            self.name, self.spi, "in" if self.inbound else "out", self.alg, self.ealg,
            self.sport, self.dport)


class Pair:
    """The four SAs of one ipsec-3gpp (or ipsec-man) association, seen from one end:
    out_c: SA1 our port-c -> their port-s;  in_s: SA2 their port-c -> our port-s;
    in_c:  SA3 their port-s -> our port-c;  out_s: SA4 our port-s -> their port-c."""

    def __init__(self, out_c, in_s, in_c, out_s):
        self.out_c = out_c
        self.in_s = in_s
        self.in_c = in_c
        self.out_s = out_s

    def all(self):
        return (self.out_c, self.in_s, self.in_c, self.out_s)

    def outbound_for(self, sport):
        """The outbound SA whose inner source port is sport (port-c or port-s)."""
        if sport == self.out_c.sport:
            return self.out_c
        if sport == self.out_s.sport:
            return self.out_s
        return None


class SADB:
    def __init__(self, rng, mtu=DEFAULT_MTU, window=replay.DEFAULT_SIZE):
        self._rng = rng  # rng(n) -> n random bytes (os.urandom in the shell)
        self.mtu = mtu
        self.window = window
        self.inbound = {}  # spi -> SA
        self.outbound = {}  # spi -> SA
        self.drops = [0] * len(DROP_NAMES)

    def drop_counts(self):
        return dict(zip(DROP_NAMES, self.drops))

    def new_sa(self, spi, inbound, alg, akey, ealg, ekey, sport, dport,
               now_ms=0, lifetime_ms=None, counter=None, name=""):
        """Make and register one SA with keys already expanded."""
        table = self.inbound if inbound else self.outbound
        if spi in table:
            raise EspError("spi 0x%08x already installed" % spi)
        sa = SA(spi, inbound, alg, akey, ealg, ekey, sport, dport, self._rng(16),
                self.mtu, self.window, counter, name)
        if lifetime_ms is not None:
            sa.expires_ms = now_ms + lifetime_ms
        table[spi] = sa
        return sa

    def install_3gpp(self, our_spi_c, our_spi_s, our_port_c, our_port_s,
                     their_spi_c, their_spi_s, their_port_c, their_port_s,
                     alg, ealg, ik, ck, now_ms=0, lifetime_ms=None, counters=None):
        """Create the four SAs of an ipsec-3gpp pair (DESIGN.md section 4 table).
        counters: optional (sa1, sa4) sequence counters (ipsec-man uses seq.Reserved)."""
        akey, ekey = expand_keys(alg, ealg, ik, ck)
        c1, c4 = counters or (None, None)
        made = []
        try:
            for spi, inb, sp, dp, ctr, nm in (
                    (their_spi_s, False, our_port_c, their_port_s, c1, "sa1"),
                    (our_spi_s, True, their_port_c, our_port_s, None, "sa2"),
                    (our_spi_c, True, their_port_s, our_port_c, None, "sa3"),
                    (their_spi_c, False, our_port_s, their_port_c, c4, "sa4")):
                made.append(self.new_sa(spi, inb, alg, akey, ealg, ekey, sp, dp,
                                        now_ms, lifetime_ms, ctr, nm))
        except Exception:
            for sa in made:
                self.remove(sa)
            raise
        return Pair(made[0], made[1], made[2], made[3])

    def install_manual(self, conf, hwm, persist, now_ms=0, block=1024, rx_top=None,
                       rx_persist=None, rx_block=replay.MARK_BLOCK):
        """ipsec-man: the provisioned four-SA set. conf holds the same fields as
        install_3gpp's arguments; hwm(spi) -> stored high-water mark (0 if none) and
        persist(spi, value) stores one, so sequence numbers never repeat (seq.py).
        rx_top(spi) -> the last stored .window.top of an inbound SA (or 0): numbers up to
        it are refused after a reboot, so packets captured before it cannot be replayed.
        rx_persist(spi, value) stores that mark, rx_block numbers ahead of the window top
        (replay.Window.reserve: rounded up, so it is never below an accepted number)."""
        c1 = seq.Reserved(hwm(conf["their_spi_s"]), _bind(persist, conf["their_spi_s"]), block)
        c4 = seq.Reserved(hwm(conf["their_spi_c"]), _bind(persist, conf["their_spi_c"]), block)
        pair = self.install_3gpp(
            conf["our_spi_c"], conf["our_spi_s"], conf["our_port_c"], conf["our_port_s"],
            conf["their_spi_c"], conf["their_spi_s"], conf["their_port_c"], conf["their_port_s"],
            conf["alg"], conf.get("ealg", "null"), conf["ik"], conf.get("ck"),
            now_ms, None, (c1, c4))
        if rx_top is not None:
            for sa in (pair.in_s, pair.in_c):
                top = rx_top(sa.spi)
                if top:
                    sa.window.restore(top)
        if rx_persist is not None:
            for sa in (pair.in_s, pair.in_c):
                sa.window.reserve(_bind(rx_persist, sa.spi), rx_block)
        return pair

    def lookup(self, spi, now_ms=None):
        """Inbound SA for spi, or None if unknown or expired."""
        sa = self.inbound.get(spi)
        if sa is None:
            return None
        if now_ms is not None and sa.expires_ms is not None and now_ms >= sa.expires_ms:
            return None
        return sa

    def remove(self, sa):
        table = self.inbound if sa.inbound else self.outbound
        if table.get(sa.spi) is sa:
            del table[sa.spi]

    def remove_pair(self, pair):
        for sa in pair.all():
            self.remove(sa)

    def retire(self, pair, now_ms, grace_ms):
        """Re-keying: the old pair's outbound SAs go now; its inbound SAs keep accepting
        in-flight packets until now_ms + grace_ms (then expire() removes them)."""
        self.remove(pair.out_c)
        self.remove(pair.out_s)
        for sa in (pair.in_s, pair.in_c):
            dl = now_ms + grace_ms
            if sa.expires_ms is None or sa.expires_ms > dl:
                sa.expires_ms = dl

    def expire(self, now_ms):
        """Remove every SA whose lifetime has passed; returns the removed SAs."""
        gone = []
        for table in (self.inbound, self.outbound):
            for spi in list(table):
                sa = table[spi]
                if sa.expires_ms is not None and now_ms >= sa.expires_ms:
                    del table[spi]
                    gone.append(sa)
        return gone

    def next_deadline(self):
        """Earliest expiry time in ms, or None (the shell's timer, DESIGN.md section 3)."""
        best = None
        for table in (self.inbound, self.outbound):
            for sa in table.values():
                e = sa.expires_ms
                if e is not None and (best is None or e < best):
                    best = e
        return best


def _bind(persist, spi):
    def f(value):
        persist(spi, value)
    return f
