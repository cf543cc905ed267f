# Monotonic milliseconds for the cores (DESIGN.md 3: cores take now_ms). time.ticks_ms wraps
# (at 2**30 on the board); we widen it into a non-wrapping count with ticks_diff.
import time

_base = None
_last = 0
_acc = 0


def now_ms():
    """Milliseconds since the first call; never goes backwards, never wraps."""
    global _base, _last, _acc
    t = time.ticks_ms()
    if _base is None:
        _base = t
        _last = t
        return 0
    _acc += time.ticks_diff(t, _last)
    _last = t
    return _acc


def sleep_ms(ms):
    time.sleep_ms(ms)
