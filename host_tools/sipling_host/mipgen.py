"""Generate firmware/package.json, the mip manifest of the device app.

With it a board already running stock MicroPython gets the app without a build:

    mpremote connect /dev/ttyUSB0 mip install --target / firmware/package.json
    mpremote mip install --target / github:OWNER/sipling/firmware/package.json

``--target /`` puts main.py and sipling/ at the root, where `sipling image` puts them (the
board runs /main.py; ``''`` is first on sys.path). Run ``python -m sipling_host.mipgen`` after
adding or removing a firmware file; tests/host/test_boards.py fails while package.json misses one.
"""
import json
import os
import sys

from .image import app_files, firmware_dir

VERSION = "0.1.0"


def manifest(src=None):
    """The package.json dict: every app file (main.py, sipling/**) as [dest, relative url]."""
    src = src or firmware_dir()
    return {"urls": [[rel, rel] for rel in app_files(src)], "deps": [], "version": VERSION}


def render(src=None):
    """package.json text: one url pair per line so diffs stay readable."""
    m = manifest(src)
    lines = ["{", '  "urls": [']
    lines.append(",\n".join("    " + json.dumps(u) for u in m["urls"]))
    lines.append("  ],")
    lines.append('  "deps": [],')
    lines.append('  "version": %s' % json.dumps(m["version"]))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main(argv=None):
    """``python -m sipling_host.mipgen [--check] [FIRMWARE_DIR]``: write package.json, or with
    --check only report whether it is up to date (exit 1 when stale)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in argv
    if check:
        argv.remove("--check")
    src = argv[0] if argv else firmware_dir()
    path = os.path.join(src, "package.json")
    text = render(src)
    if check:
        try:
            with open(path) as f:
                old = f.read()
        except OSError:
            old = ""
        if old != text:
            print("%s is stale: run python -m sipling_host.mipgen" % path)
            return 1
        print("%s is up to date (%d files)" % (path, len(manifest(src)["urls"])))
        return 0
    with open(path, "w") as f:
        f.write(text)
    print("wrote %s (%d files)" % (path, len(manifest(src)["urls"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
