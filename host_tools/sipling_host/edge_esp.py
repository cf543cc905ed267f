"""The edge's ESP: the firmware's SADB and codec (sipling.esp) used from CPython.

Devices choose their own inbound SPIs, so two devices (or two candidate lines of one
device) may use the same SPI toward the edge. Each association therefore gets its own
``SADB``; inbound packets find theirs by the SPI the edge chose (unique across the edge).
ipsec-man keys outlive a restart, so with ``state_dir`` the edge persists, per manual SA,
the outbound sequence high-water mark (``seq-<spi>``, reserved in blocks: a number is never
reused, RFC 4303 section 3.3.3) and the highest inbound number authenticated (``in-<spi>``,
written on every accepted packet: a packet captured before a restart cannot be replayed
after it, section 3.4.3).
"""
import os

from sipling.esp import sa as esa
from sipling.esp import udp as eudp


class EspDrop(Exception):
    def __init__(self, reason, spi=None):
        super().__init__(reason)
        self.reason = reason
        self.spi = spi


class EdgeEsp:
    def __init__(self, rng, state_dir=None, now=None):
        self._rng = rng
        self.state_dir = state_dir
        self._now = now or (lambda: None)
        self.by_spi = {}    # edge inbound SPI -> SADB
        self.pairs = {}     # edge spi-s of the offer -> (SADB, Pair)
        self.drops = {}     # reason -> count (all devices)
        self._man_in = set()  # inbound SPIs of manual SAs (their window top is persisted)

    def has_spi(self, spi):
        return spi in self.by_spi

    def install_3gpp(self, o, ik, ck):
        db = esa.SADB(self._rng, mtu=65535)
        pair = db.install_3gpp(o.spi_pc, o.spi_ps, o.port_pc, o.port_ps,
                               o.spi_uc, o.spi_us, o.port_uc, o.port_us, o.alg, o.ealg, ik, ck)
        self._keep(o, db, pair)

    def install_man(self, o, man):
        db = esa.SADB(self._rng, mtu=65535)
        conf = {"our_spi_c": o.spi_pc, "our_spi_s": o.spi_ps, "our_port_c": o.port_pc,
                "our_port_s": o.port_ps, "their_spi_c": o.spi_uc, "their_spi_s": o.spi_us,
                "their_port_c": o.port_uc, "their_port_s": o.port_us,
                "alg": man["alg"], "ealg": man["ealg"], "ik": man["ik"], "ck": man["ck"]}
        pair = db.install_manual(conf, self._hwm, self._persist)
        for sa in (pair.in_s, pair.in_c):
            top = self._read("in-%d" % sa.spi)
            if top:
                sa.window.restore(top)
            self._man_in.add(sa.spi)
        self._keep(o, db, pair)

    def skip_marks(self, o):
        """ipsec-man: the device may have rebooted, and refuses up to replay.MARK_BLOCK - 1
        numbers above the last it accepted (its mark is rounded up): leave them unused on
        both SAs toward it, so nothing it must receive falls into that gap."""
        from sipling.esp.replay import MARK_BLOCK
        e = self.pairs.get(o.spi_ps)
        if e is not None:
            for sa in (e[1].out_c, e[1].out_s):
                sa.counter.skip(MARK_BLOCK - 1)

    def _keep(self, o, db, pair):
        self.pairs[o.spi_ps] = (db, pair)
        self.by_spi[o.spi_pc] = db
        self.by_spi[o.spi_ps] = db

    def remove(self, o):
        e = self.pairs.pop(o.spi_ps, None)
        if e is None:
            return
        e[0].remove_pair(e[1])
        for spi in (o.spi_pc, o.spi_ps):
            self._man_in.discard(spi)
            if self.by_spi.get(spi) is e[0]:
                del self.by_spi[spi]

    def protect(self, o, their_spi, sport, dport, data, src_ip, dst_ip):
        """ESP packet (bytes) for the datagram sport->dport on offer o's outbound SA their_spi."""
        e = self.pairs.get(o.spi_ps)
        sa = e[0].outbound.get(their_spi) if e else None
        if sa is None:
            raise EspDrop("no-outbound-sa", their_spi)
        return bytes(eudp.protect_udp(sa, src_ip, dst_ip, sport, dport, data))

    def unprotect(self, pkt, src_ip, dst_ip):
        """(spi, sport, dport, payload bytes) or EspDrop(reason) (sipling.esp.sa names)."""
        pkt = bytes(pkt)
        spi = int.from_bytes(pkt[0:4], "big") if len(pkt) >= 4 else None
        db = self.by_spi.get(spi)
        if db is None:
            return self._fail("too_short" if spi is None else "unknown_spi", spi)
        before = list(db.drops)
        r = eudp.open_udp(db, pkt, self._now())
        if r is None:
            reason = "bad_icv"
            for i, n in enumerate(db.drops):
                if n != before[i]:
                    reason = esa.DROP_NAMES[i]
            return self._fail(reason, spi)
        if spi in self._man_in:
            self._write("in-%d" % spi, r[0].window.top)
        return spi, r[1], r[2], bytes(r[3])

    def _fail(self, reason, spi):
        self.drops[reason] = self.drops.get(reason, 0) + 1
        raise EspDrop(reason, spi)

    # -- ipsec-man sequence high-water marks ---------------------------------------
    def _hwm(self, spi):
        return self._read("seq-%d" % spi)

    def _persist(self, spi, value):
        self._write("seq-%d" % spi, value)

    def _read(self, name):
        if not self.state_dir:
            return 0
        try:
            with open(os.path.join(self.state_dir, name)) as f:
                return int(f.read().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _write(self, name, value):
        if not self.state_dir:
            return
        p = os.path.join(self.state_dir, name)
        tmp = p + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % value)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
