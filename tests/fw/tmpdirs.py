# Throw-away directories under /tmp for the provisioning tests (both interpreters: no
# tempfile or shutil on MicroPython).
import os

_n = [0]


def make(prefix):
    """A new empty directory /tmp/<prefix>-<random>-<n>."""
    _n[0] += 1
    d = "/tmp/%s-%d-%d" % (prefix, int.from_bytes(os.urandom(4), "big"), _n[0])
    os.mkdir(d)
    return d


def remove(d):
    """Remove d and the files in it (the tests make no subdirectories)."""
    for n in os.listdir(d):
        os.remove(d + "/" + n)
    os.rmdir(d)
