"""Build what bench_app.py loads besides the .py sources (CPython, run by bench_app.py).

    python tests/bench/mpybuild.py OUTDIR
      OUTDIR/mpy/sipling/**.mpy   firmware/sipling compiled by mpy-cross as bytecode (no
                                  -march), as the boards load it; the two files with viper
                                  code (not on the app's path) for this machine's arch
      OUTDIR/romfs.img            the same .mpy tree as a MicroPython ROMFS image
                                  (mpremote's VfsRomWriter, what `mpremote romfs deploy`
                                  writes to a board's romfs partition)
Prints one line: the image size in bytes.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "host_tools"))

from mpremote.romfs import VfsRomWriter  # noqa: E402
from sipling_host import image  # noqa: E402
from sipling_host.errors import UserError  # noqa: E402


def build(out):
    src = os.path.join(ROOT, "firmware")
    rw = VfsRomWriter()
    _walk(src, "sipling", os.path.join(out, "mpy"), rw)
    img = rw.finalise()
    with open(os.path.join(out, "romfs.img"), "wb") as f:
        f.write(img)
    return len(img)


def _walk(src, rel, out, rw):
    rw.opendir(rel.rpartition("/")[2])
    os.makedirs(os.path.join(out, rel), exist_ok=True)
    for name in sorted(os.listdir(os.path.join(src, rel))):
        r = rel + "/" + name
        p = os.path.join(src, r)
        if os.path.isdir(p):
            if name != "__pycache__":
                _walk(src, r, out, rw)
        elif name.endswith(".py"):
            try:
                data = image.compile_mpy(p, r, image.BYTECODE)
            except UserError:  # viper/native code needs an arch
                data = image.compile_mpy(p, r, image.resolve_arch(image.HOST))
            with open(os.path.join(out, r[:-3] + ".mpy"), "wb") as f:
                f.write(data)
            rw.mkfile(name[:-3] + ".mpy", data)
    rw.closedir()


if __name__ == "__main__":
    print(build(sys.argv[1]))
