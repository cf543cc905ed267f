# Outbound sequence numbers for manually keyed SAs (ipsec-man) that never repeat, even
# across reboots (RFC 4303 section 3.3.3: the counter must not cycle under one key).
# The persisted value is a high-water mark: the highest number that may have been used.
# Numbers are reserved `block` at a time, so flash is written once per `block` packets;
# a reboot skips the unused rest of the last block, which is harmless.
# Sans-IO: `persist(hwm)` is supplied by the shell and must have stored hwm (or raised)
# before it returns; a number is never handed out beyond what was stored.
from micropython import const

SEQ_MAX = const(0xFFFFFFFF)


class SeqExhausted(Exception):
    def __init__(self, msg="sequence number space exhausted; re-key the SA"):
        super().__init__(msg)


class Counter:
    """Plain counter for dynamically keyed SAs (fresh keys, start at 1)."""

    def __init__(self):
        self.last = 0

    def take(self):
        n = self.last + 1
        if n > SEQ_MAX:
            raise SeqExhausted()
        self.last = n
        return n

    def skip(self, n):
        """Never use the next n numbers (RFC 4303 3.3.3 allows gaps). For Reserved, the
        next take() stores a new mark first when the skip passed the stored one."""
        self.last = min(self.last + n, SEQ_MAX)


class Reserved(Counter):
    """Counter backed by a persisted high-water mark (see module comment)."""

    def __init__(self, stored_hwm, persist, block=1024):
        if block < 1:
            raise ValueError("block must be >= 1")
        self.last = stored_hwm  # numbers <= stored_hwm may have been used before
        self.limit = stored_hwm
        self.block = block
        self.writes = 0
        self._persist = persist

    def take(self):
        n = self.last + 1
        if n > SEQ_MAX:
            raise SeqExhausted()
        if n > self.limit:
            lim = n + self.block - 1
            if lim > SEQ_MAX:
                lim = SEQ_MAX
            self._persist(lim)  # stored before any number of the new block is used
            self.writes += 1
            self.limit = lim
        self.last = n
        return n
