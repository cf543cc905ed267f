"""`make bench`: runs every tests/bench/bench_*.py on the MicroPython unix port.

Each bench script prints its own table (figures as ratios against a reference run in the
same process, per DESIGN.md). The interpreter: $MICROPYTHON, else the venv's
(sipling_host.mpbin).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "host_tools"))

from sipling_host import mpbin  # noqa: E402


def main():
    try:
        mp = mpbin.micropython()
    except mpbin.UserError as e:
        print("sipling: %s" % e, file=sys.stderr)
        return 1
    env = dict(os.environ, MICROPYPATH=":".join([os.path.join(ROOT, "firmware"), HERE, ".frozen"]))
    rc = 0
    for name in sorted(os.listdir(HERE)):
        if name.startswith("bench_") and name.endswith(".py"):
            print("== %s (MicroPython unix port)" % name, flush=True)
            r = subprocess.run([mp, os.path.join(HERE, name)], env=env, cwd=ROOT)
            rc = rc or r.returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
