"""Where the MicroPython unix port binary is: one answer for `sipling sim`, the pty board,
the demo, the tests and `make bench`."""
import os
import shutil
import sys

from .errors import UserError

from .paths import ROOT


def _runnable(path):
    return bool(path) and os.path.isfile(path) and os.access(path, os.X_OK)


def micropython(explicit=None):
    """The unix port binary as an absolute path: `explicit` (--micropython PATH), else
    $MICROPYTHON, else the one next to this Python (the venv's), else the checkout's
    .venv, else `micropython` on PATH. UserError naming what to do when there is none."""
    if explicit:
        if not _runnable(explicit):
            raise UserError("--micropython %s is not an executable file; give the unix port binary "
                            "(make setup puts one at .venv/bin/micropython)" % explicit)
        return os.path.abspath(explicit)
    for c in (os.environ.get("MICROPYTHON"),
              os.path.join(os.path.dirname(sys.executable), "micropython"),
              os.path.join(ROOT, ".venv", "bin", "micropython"), shutil.which("micropython")):
        if _runnable(c):
            return os.path.abspath(c)
    raise UserError("MicroPython unix port not found; run `make setup` (installs it into .venv), "
                    "or set MICROPYTHON=PATH / pass --micropython PATH")
