# Device log: one line per event, the format `sipling logs` parses on the host.
#
#   <ms> <LEVEL> <module>: <message>\n          LEVEL in DEBUG INFO WARN ERROR
#   <ms> TRACE <dir> <proto> <src> <dst> <base64>\n
#
# <ms> is the device clock (set_clock), <dir> is "in" or "out", <proto> "udp" or "tcp",
# <src>/<dst> "ip:port", <base64> the whole SIP message (binascii, no newline), so the host
# can rebuild a pcap from it. No side effects at import: the sink is a no-op until
# set_sink() is called. A redact guard keeps key-looking fields out of every text line
# (keys and passwords never appear in logs); trace payloads are SIP messages, which carry
# no keys (keys are provisioned, never negotiated on the wire).
from micropython import const
import binascii

DEBUG = const(10)
INFO = const(20)
WARN = const(30)
ERROR = const(40)
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARN: "WARN", ERROR: "ERROR"}
_BY_NAME = {"debug": DEBUG, "info": INFO, "warn": WARN, "warning": WARN, "error": ERROR}

# Field names whose value is replaced by *** (matched case-insensitively, followed by
# `=`, `:` or `":`), and the length of a bare hex run that is treated as key material.
_SECRET_FIELDS = ("password", "passwd", "secret", "key", "ik", "ck", "psk")
_HEX_RUN = const(32)

_sink = None
_clock = None
_level = INFO
_trace = True
_ring = []
_ring_n = 8  # lines kept for recent(); set_ring(n)


def set_sink(write_fn):
    """write_fn(line: str) gets each whole line, ending in "\\n"; None silences the log."""
    global _sink
    _sink = write_fn


def set_clock(ms_fn):
    """ms_fn() -> int milliseconds (time.ticks_ms on the board); None gives 0."""
    global _clock
    _clock = ms_fn


def set_level(level):
    """level: DEBUG/INFO/WARN/ERROR or their names ("debug", "info", "warn", "error")."""
    global _level
    if isinstance(level, str):
        lv = _BY_NAME.get(level.lower())
        if lv is None:
            raise ValueError("log level")
        level = lv
    _level = level


def set_trace(on):
    """Turn SIP traces on or off (config log.trace_sip)."""
    global _trace
    _trace = bool(on)


def enabled(level):
    return level >= _level


def set_ring(n):
    """Keep the last n lines for recent() (default 8; 0 keeps none). Each kept line costs
    heap (about 130 bytes on a 64-bit port), so a board keeps few."""
    global _ring_n
    _ring_n = n if n > 0 else 0
    while len(_ring) > _ring_n:
        _ring.pop(0)


def recent():
    """The last few lines written (newest last), for a `log` console command."""
    return list(_ring)


def _now():
    if _clock is None:
        return 0
    try:
        return _clock()
    except Exception:
        return 0


def _emit(line):
    if _ring_n:
        if len(_ring) >= _ring_n:
            _ring.pop(0)
        _ring.append(line)
    if _sink is not None:
        try:
            _sink(line)
        except Exception:
            pass


def _is_hex(c):
    return ("0" <= c <= "9") or ("a" <= c <= "f") or ("A" <= c <= "F")


def _value_end(s, i):
    # value runs to the next separator; a quoted value to its closing quote
    n = len(s)
    if i < n and s[i] == '"':
        j = s.find('"', i + 1)
        return n if j < 0 else j + 1
    while i < n and s[i] not in " ,;}&\r\n\t":
        i += 1
    return i


def _field_at(low, i, name):
    # name at i, not inside a word, then optional quote/spaces and "=" or ":" -> value start
    if i > 0 and low[i - 1].isalpha():
        return -1
    n = len(low)
    j = i + len(name)
    if j < n and low[j] == '"':
        j += 1
    while j < n and low[j] == " ":
        j += 1
    if j >= n or low[j] not in "=:":
        return -1
    j += 1
    while j < n and low[j] == " ":
        j += 1
    return j


def _redact_fields(s):
    low = s.lower()
    spans = []
    for name in _SECRET_FIELDS:
        i = low.find(name)
        while i >= 0:
            j = _field_at(low, i, name)
            if j >= 0:
                k = _value_end(s, j)
                if k > j:
                    spans.append((j, k))
            i = low.find(name, i + 1)
    if not spans:
        return s
    spans.sort()
    out = []
    pos = 0
    for j, k in spans:
        if j < pos:
            continue
        out.append(s[pos:j])
        out.append("***")
        pos = k
    out.append(s[pos:])
    return "".join(out)


def _hex_runs(tok):
    # (start, end) of runs of >= _HEX_RUN hex digits in one token
    runs = []
    run = 0
    n = len(tok)
    for i in range(n + 1):
        if i < n and _is_hex(tok[i]):
            run += 1
        else:
            if run >= _HEX_RUN:
                runs.append((i - run, i))
            run = 0
    return runs


def _redact_hex(s):
    if len(s) < _HEX_RUN:
        return s
    out = None
    for tok in s.split(" "):
        if len(tok) < _HEX_RUN:
            continue
        runs = _hex_runs(tok)
        if runs:
            if out is None:
                out = s
            parts = []
            pos = 0
            for a, b in runs:
                parts.append(tok[pos:a])
                parts.append("<hex:%d>" % (b - a))
                pos = b
            parts.append(tok[pos:])
            out = out.replace(tok, "".join(parts))
    return s if out is None else out


def redact(msg):
    """msg with secret-looking field values as *** and long hex runs as <hex:N>."""
    s = msg if isinstance(msg, str) else str(msg)
    return _redact_hex(_redact_fields(s))


def _log(level, module, msg):
    if level < _level:
        return
    msg = redact(msg).replace("\r", " ").replace("\n", " | ")
    _emit("%d %s %s: %s\n" % (_now(), _NAMES.get(level, "INFO"), module, msg))


def debug(module, msg):
    _log(DEBUG, module, msg)


def info(module, msg):
    _log(INFO, module, msg)


def warn(module, msg):
    _log(WARN, module, msg)


def error(module, msg):
    _log(ERROR, module, msg)


def exc(module, msg, e):
    """ERROR line naming the exception type and text (no traceback)."""
    _log(ERROR, module, "%s: %s: %s" % (msg, type(e).__name__, e))


def _addr(a):
    if isinstance(a, tuple):
        return "%s:%d" % (a[0], a[1])
    if isinstance(a, bytes):
        return a.decode()
    return str(a)


def trace(direction, proto, src, dst, data):
    """One SIP message as a TRACE line. direction "in"/"out"; src/dst (ip, port) or "ip:port"."""
    if not _trace or _sink is None:
        return
    b64 = binascii.b2a_base64(bytes(data)).strip().decode()
    line = "%d TRACE %s %s %s %s %s\n" % (_now(), direction, proto, _addr(src), _addr(dst), b64)
    if _sink is not None:
        try:
            _sink(line)
        except Exception:
            pass
