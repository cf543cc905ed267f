"""`make bench`: runs every tests/bench/bench_*.py on the MicroPython unix port.

Each bench script prints its own table (figures as ratios against a reference run in the
same process, per DESIGN.md). MICROPYTHON overrides the interpreter path.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main():
    mp = os.environ.get("MICROPYTHON") or os.path.join(ROOT, ".venv", "bin", "micropython")
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
