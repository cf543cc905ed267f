"""Shared bits of the provisioning/logs host tests: the stub board behind a pty."""
import hashlib
import os
import re

from sipling_host.ptyboard import PtyBoard

HERE = os.path.dirname(os.path.abspath(__file__))
STUB = os.path.join(HERE, "board_stub_main.py")


def board(*args):
    return PtyBoard(STUB, list(args))


def boot_fp(b, start):
    """The fingerprint prefix the stub printed at its boot after output offset `start`."""
    b.wait_output(b"boot: config ", start=start)
    i = b.output.find(b"boot: config ", start)
    j = b.output.find(b"\n", i)
    while j < 0:
        b.wait_output(b"\n", start=i)
        j = b.output.find(b"\n", i)
    return b.output[i + len(b"boot: config "):j].decode()


def fp16(data):
    return hashlib.sha256(data).hexdigest()[:16] if data is not None else "none"


def board_file(b, name="sipling.json"):
    p = os.path.join(b.cwd, name)
    if not os.path.exists(p):
        return None
    with open(p, "rb") as f:
        return f.read()


HEX32 = re.compile(r"[0-9a-fA-F]{32}")
