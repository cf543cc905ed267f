# Anti-replay window, RFC 4303 section 3.4.3 (and Appendix A2 for the sliding bitmap).
# check() is the cheap pre-test done before the ICV; update() moves the window and is
# called only after the ICV has verified, so forged packets cannot shift it.
# The bitmap is a ring of `size` bits in a bytearray: no big ints, no allocation.
from micropython import const

DEFAULT_SIZE = const(128)  # RFC 4303: at least 32, 64 recommended
_SEQ_MAX = const(0xFFFFFFFF)
# ipsec-man: an inbound window top is persisted this many numbers ahead (reserve()); after
# a reboot up to MARK_BLOCK - 1 numbers the sender had not used yet are refused, so the
# edge skips that many when the device registers afresh (edge_esp.skip_marks)
MARK_BLOCK = const(8)


class Window:
    def __init__(self, size=DEFAULT_SIZE):
        if size < 64 or size % 8:
            raise ValueError("window size must be a multiple of 8, >= 64")
        self.size = size
        self.top = 0  # highest sequence number authenticated so far
        self._bits = bytearray(size // 8)
        self.limit = _SEQ_MAX  # top may grow to this without a persist() call
        self._persist = None
        self._block = 1
        self.writes = 0

    def reserve(self, persist, block=MARK_BLOCK):
        """Manual keys: persist(value) (it has stored value, or raised, when it returns)
        is called before .top passes the stored value, with value = the new top + block - 1,
        so flash is written once per `block` numbers. The mark is rounded UP: restore() of
        the stored value refuses every number accepted before a reboot (plus at most
        block - 1 the sender had not used yet: those packets are lost, never replayed).
        If persist() raises, the packet is not accepted (update() changes nothing)."""
        if block < 1:
            raise ValueError("block must be >= 1")
        self._persist = persist
        self._block = block
        self.limit = self.top

    def restore(self, top):
        """After a reboot (manual keys): treat every number <= top as already seen.
        top is the last persisted value of .top (persist it as often as flash allows:
        numbers the sender uses later are always above the real top, so none is lost)."""
        self.top = top
        b = self._bits
        for k in range(len(b)):
            b[k] = 0xFF if top else 0

    def _bit(self, seq):
        i = seq % self.size
        return i >> 3, 1 << (i & 7)

    def check(self, seq):
        """False for seq 0, for a number left of the window, or one already seen."""
        if seq == 0:
            return False
        top = self.top
        if seq > top:
            return True
        if top - seq >= self.size:
            return False  # left of the window (this also covers numbers before a restore)
        i, m = self._bit(seq)
        return not (self._bits[i] & m)

    def update(self, seq):
        """Mark seq received (after check() passed and the ICV verified)."""
        top = self.top
        b = self._bits
        if seq > top:
            if seq > self.limit:
                lim = seq + self._block - 1
                if lim > _SEQ_MAX:
                    lim = _SEQ_MAX
                self._persist(lim)  # stored before the window moves past the old mark
                self.writes += 1
                self.limit = lim
            diff = seq - top
            if diff >= self.size:
                for k in range(len(b)):
                    b[k] = 0
            else:
                s = top + 1
                while s <= seq:
                    i, m = self._bit(s)
                    b[i] &= ~m & 255
                    s += 1
            self.top = seq
        i, m = self._bit(seq)
        b[i] |= m
