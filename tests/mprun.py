# Minimal test runner for the MicroPython unix port (it has no unittest/pytest).
# Runs every `test_*` function of tests/fw/test_*.py (or the files given), prints one line
# per failure and a summary, exits 1 on any failure.
#   usage: micropython tests/mprun.py [tests/fw/test_x.py ...] [-k substring]
import os
import sys

HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
ROOT = HERE.rsplit("/", 1)[0] if "/" in HERE else "."
if HERE == ".":
    ROOT = ".."
for p in (ROOT + "/firmware", HERE + "/fw"):
    if p not in sys.path:
        sys.path.insert(0, p)


def main(argv):
    files = []
    pattern = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-k":
            pattern = argv[i + 1]
            i += 2
            continue
        files.append(a)
        i += 1
    if not files:
        d = HERE + "/fw"
        files = [d + "/" + n for n in sorted(os.listdir(d)) if n.startswith("test_") and n.endswith(".py")]
    passed = failed = 0
    for path in files:
        name = path.rsplit("/", 1)[-1][:-3]
        try:
            mod = __import__(name)
        except Exception as e:
            print("ERROR importing", name)
            sys.print_exception(e)
            failed += 1
            continue
        for attr in sorted(dir(mod)):
            if not attr.startswith("test_"):
                continue
            if pattern and pattern not in attr and pattern not in name:
                continue
            fn = getattr(mod, attr)
            if not callable(fn):
                continue
            try:
                fn()
                passed += 1
            except Exception as e:
                failed += 1
                print("FAIL %s.%s" % (name, attr))
                sys.print_exception(e)
    print("micropython: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


sys.exit(main(sys.argv[1:]))
