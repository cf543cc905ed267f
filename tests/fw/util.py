"""Helpers for firmware tests; runs on CPython (pytest) and on the MicroPython unix port.

Firmware tests are plain `def test_*():` functions using `assert`; no fixtures, no
pytest imports, so tests/mprun.py can run the very same files under MicroPython.
"""
import sys

IS_MICROPYTHON = sys.implementation.name == "micropython"


def _tests_dir():
    f = __file__
    i = f.rfind("/")
    d = f[:i] if i >= 0 else "."
    i = d.rfind("/")
    return d[:i] if i >= 0 else ".."


TESTS_DIR = _tests_dir()


def vector(relpath):
    """Bytes of tests/vectors/<relpath>, exactly as stored."""
    with open(TESTS_DIR + "/vectors/" + relpath, "rb") as f:
        return f.read()


def listdir(relpath):
    import os
    return sorted(os.listdir(TESTS_DIR + "/vectors/" + relpath))


def raises(exc, fn, *args, **kw):
    """Assert fn(*args, **kw) raises exc; return the exception."""
    try:
        fn(*args, **kw)
    except exc as e:
        return e
    raise AssertionError("%r did not raise %s" % (fn, exc.__name__))


def unhex(s):
    import binascii
    return binascii.unhexlify(s.replace(" ", "").replace("\n", ""))


def poll_until(fn, tries=200, pause_s=0.005):
    """fn() until it returns something other than None (a datagram on a non-blocking socket),
    or None after `tries` attempts."""
    import time
    for _ in range(tries):
        r = fn()
        if r is not None:
            return r
        time.sleep(pause_s)
    return None
