"""`sipling flash`: put the app on a board and check it arrived.

Two ways, both built on the tools MicroPython users already have:

- **esptool** (default): writes what `sipling image` built (``full.bin`` at the firmware
  offset when a stock firmware was merged in, else ``vfs.bin`` at the vfs offset) with
  ``esptool write-flash`` (progress shown; esptool checks each region's MD5 on the chip),
  then ``esptool verify-flash`` reads it back.
- **mpremote** (``--mpremote``): for a board already running stock MicroPython; compiles the
  app for the board, removes the old ``sipling/`` folder, copies main.py, sipling/ (.mpy) and
  board.json with ``mpremote connect PORT resume fs cp``, then hashes every file on the board
  and compares. The device config (/sipling.json) is left alone.

Public API: :func:`regions`, :func:`check_port`, :func:`esptool_flash`, :func:`mpremote_copy`.
"""
import json
import os
import subprocess
import sys
import tempfile

from . import boards, image
from .errors import UserError

HELP = "write the image to the board with esptool (or copy the app with mpremote) and verify it"
BAUD = 460800


def regions(board, path):
    """[(offset, file, what)] to write for ``path``: an image folder (image.json inside), a
    merged/firmware .bin (starts with the ESP image magic) or a littlefs vfs.bin."""
    fw_off, vfs_off, vfs_size = boards.offsets(board)
    name = board["name"]
    if os.path.isdir(path):
        meta = os.path.join(path, image.IMAGE_JSON)
        if not os.path.isfile(meta):
            raise UserError("no image in %s; build it first: sipling image --board %s --out %s" % (path, name, path))
        with open(meta) as f:
            info = json.load(f)
        if info.get("board") != name:
            raise UserError("the image in %s was built for board %s, not %s; run sipling image --board %s"
                            % (path, info.get("board"), name, name))
        part = info.get("full") or info["vfs"]
        path = os.path.join(path, part["path"])
        if not os.path.isfile(path):
            raise UserError("%s is missing; build it again: sipling image --board %s" % (path, name))
    try:
        with open(path, "rb") as f:
            head = f.read(4096 + 16)
        size = os.path.getsize(path)
    except OSError as e:
        raise UserError("cannot read image %s: %s; build it with sipling image --board %s" % (path, e.strerror, name))
    if head[:1] == bytes([image.ESP_IMAGE_MAGIC]):
        chip_id = head[12] | head[13] << 8 if len(head) >= 14 else -1
        if chip_id != boards.CHIPS[board["chip"]][1]:
            raise UserError("%s is not a firmware image for %s (chip id %d); pick the right --board or image"
                            % (path, boards.CHIPS[board["chip"]][3], chip_id))
        if fw_off + size > boards.flash_bytes(board["flash_size"]):
            raise UserError("%s (%d KiB) does not fit the %s flash of %s" % (path, size // 1024, board["flash_size"], name))
        return [(fw_off, path, "firmware + filesystem" if size > vfs_off - fw_off else "firmware")]
    if head[8:16] == b"littlefs" or head[4096 + 8:4096 + 16] == b"littlefs":
        if size != vfs_size:
            raise UserError("%s has %d blocks but the vfs partition of %s has %d; rebuild: sipling image --board %s"
                            % (path, size // 4096, name, vfs_size // 4096, name))
        return [(vfs_off, path, "filesystem")]
    raise UserError("%s is neither an ESP firmware image nor a littlefs image; build one with sipling image --board %s"
                    % (path, name))


def _holders(port):
    """'pid 123 (screen)' for the processes that have ``port`` open, best effort (Linux /proc)."""
    try:
        real = os.path.realpath(port)
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
                if any(os.path.realpath("/proc/%s/fd/%s" % (pid, fd)) == real for fd in fds):
                    with open("/proc/%s/comm" % pid) as f:
                        out.append("pid %s (%s)" % (pid, f.read().strip()))
            except OSError:
                continue
        return ", ".join(out[:3])
    except OSError:
        return ""


def check_port(port):
    """Open and close ``port`` (exclusively, as esptool and mpremote do) so a missing, busy or
    forbidden port gets one line saying what to do before any tool starts talking."""
    from . import serialport
    try:
        serialport.open_port(port, exclusive=True).close()
    except UserError as e:
        msg = str(e)
        if "busy" in msg:
            who = _holders(port)
            if who:
                msg = msg.replace("is busy;", "is busy (held by %s);" % who)
        raise UserError(msg) from None


def _esptool_error(msg, board, port):
    chip = boards.CHIPS[board["chip"]][3]
    if "Wrong --chip" in msg or ("This chip is" in msg and "not" in msg):
        found = msg.split("This chip is", 1)[-1].split(",")[0].split(" not ")[0].strip() if "This chip is" in msg else "another chip"
        key = found.lower().replace("-", "")
        others = boards.boards_for_chip(key)
        return UserError("wrong board: %s has an %s, but board %s is %s; use --board %s"
                         % (port, found, board["name"], chip, " or ".join(others) if others else "<a board for it>"))
    if "Failed to connect" in msg or "No serial data received" in msg or "Invalid head of packet" in msg:
        return UserError("no %s bootloader answered on %s; hold BOOT (IO0 to GND), tap RESET/EN and run again, "
                         "and check the cable carries data" % (chip, port))
    if "MD5 of file does not match" in msg or "digest mismatch" in msg.lower() or "Verification failed" in msg:
        return UserError("the flash on %s does not hold what was written (MD5 mismatch); run again with "
                         "--baud 115200, and check the power supply if it persists" % port)
    if "Permission denied" in msg or "could not open port" in msg or "exclusively lock" in msg:
        from . import serialport
        return serialport._classify(port, OSError(msg))
    return UserError("esptool: %s" % msg.strip().splitlines()[-1] if msg.strip() else "esptool failed")


def _esptool(argv, board, port):
    import esptool
    import serial
    try:
        esptool.main(argv)
    except esptool.FatalError as e:
        raise _esptool_error(str(e), board, port) from None
    except serial.SerialException as e:
        raise _esptool_error(str(e), board, port) from None
    except OSError as e:
        raise _esptool_error(str(e), board, port) from None
    except SystemExit as e:
        raise UserError("esptool stopped (exit %s); see its message above" % e.code) from None
    except StopIteration:
        raise UserError("the chip on %s stopped responding; reset it and run again" % port) from None


def esptool_flash(board, port, parts, baud=BAUD, before="default-reset", verify=True, stub=True, say=print):
    """Write ``parts`` [(offset, file, what)] with esptool write-flash, then verify-flash."""
    chip = boards.CHIPS[board["chip"]][0]
    common = ["--chip", chip, "--port", port, "--baud", str(baud), "--before", before]
    if not stub:
        common.append("--no-stub")
    pairs = []
    for off, path, what in parts:
        say("sipling flash: %s -> 0x%x on %s (%s, %d KiB)" % (path, off, port, what, os.path.getsize(path) // 1024))
        pairs += ["0x%x" % off, path]
    _esptool(common + ["--after", "no-reset" if verify else "hard-reset", "write-flash"] + pairs, board, port)
    if verify:
        _esptool(common + ["--after", "hard-reset", "verify-flash"] + pairs, board, port)
        say("sipling flash: verified %d region(s) against the chip's flash" % len(parts))


# MicroPython code run on the board through mpremote (cwd is the filesystem root on ESP32;
# relative paths keep the simulated board inside its own folder).
_RM_TREE = """
import os
def _rm(p):
    try:
        m = os.stat(p)[0]
    except OSError:
        return
    if m & 0x4000:
        for e in os.ilistdir(p):
            _rm(p + '/' + e[0])
        os.rmdir(p)
    else:
        os.remove(p)
_rm('sipling')
"""
_HASHES = """
import hashlib, binascii
for p in %r:
    h = hashlib.sha256()
    try:
        with open(p, 'rb') as f:
            while True:
                b = f.read(1024)
                if not b:
                    break
                h.update(b)
        print('H', p, binascii.hexlify(h.digest()).decode())
    except OSError:
        print('H', p, 'missing')
"""


def _mpremote(port, args, capture=False, timeout=300):
    cmd = [sys.executable, "-m", "mpremote", "connect", port, "resume"] + args
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout)
    if r.returncode:
        err = (r.stderr or r.stdout or "").strip().splitlines() if capture else []
        raise UserError("mpremote failed on %s%s; is the board running MicroPython? press RESET and try again"
                        % (port, ": " + err[-1] if err else " (see above)"))
    return r.stdout


# py/persistentcode.h MP_NATIVE_ARCH_* (the arch field of sys.implementation._mpy and .mpy headers)
NATIVE_ARCHS = ("none", "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
                "xtensa", "xtensawin", "rv32imc", "rv64imc")


def check_board_mpy(board, port, files):
    """Ask the running MicroPython which .mpy it loads (sys.implementation._mpy) and refuse
    files with native code for another arch or mpy sub-version (they would fail at import)."""
    out = _mpremote(port, ["exec", "import sys; print('MPY', getattr(sys.implementation, '_mpy', 0))"], capture=True)
    mpy = int(([l.split()[1] for l in out.splitlines() if l.startswith("MPY ")] or ["0"])[0])
    if mpy & 0xFF != 6:
        raise UserError("the MicroPython on %s loads .mpy v%d, not v6; flash MicroPython v1.23 or later"
                        % (port, mpy & 0xFF))
    arch, sub = (mpy >> 10) & 0x3F, (mpy >> 8) & 3
    native = [(p, d) for p, d, _o in files if p.endswith(".mpy") and d[2]]
    if not native:
        return
    p, d = native[0]
    if d[2] >> 2 != arch:
        here = NATIVE_ARCHS[arch] if arch < len(NATIVE_ARCHS) else str(arch)
        others = [n for n in boards.list_boards() if n != board["name"] and _board_arch(n) == here]
        raise UserError("wrong board: the MicroPython on %s runs %s code but %s is compiled for %s; use %s"
                        % (port, here, p, NATIVE_ARCHS[d[2] >> 2],
                           "--board " + " or ".join(others) if others else "--arch " + here))
    if d[2] & 3 != sub:
        raise UserError("the MicroPython on %s loads native code of mpy v6.%d, %s is v6.%d; "
                        "update the board to MicroPython v1.23 or later" % (port, sub, p, d[2] & 3))


def _board_arch(name):
    try:
        return boards.load_board(name).get("mpy_arch")
    except UserError:
        return None


def mpremote_copy(board, port, arch=None, say=print):
    """Copy main.py, sipling/ (.mpy for the board) and board.json with mpremote; verify hashes."""
    import hashlib
    files = image.stage(board, arch=arch)
    check_board_mpy(board, port, files)
    with tempfile.TemporaryDirectory(prefix="sipling-app-") as tmp:
        for path, data, _o in files:
            dst = os.path.join(tmp, path.lstrip("/"))
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(data)
        say("sipling flash: copying %d files (%d B) to %s with mpremote"
            % (len(files), sum(len(d) for _p, d, _o in files), port))
        args = ["exec", _RM_TREE, "fs", "cp", "-r", os.path.join(tmp, "sipling"), ":sipling"]
        for path, _d, _o in files:
            if not path.startswith("/sipling/"):
                args += ["+", "fs", "cp", os.path.join(tmp, path.lstrip("/")), ":" + path.lstrip("/")]
        _mpremote(port, args)
    names = [p.lstrip("/") for p, _d, _o in files]
    out = _mpremote(port, ["exec", _HASHES % (names,)], capture=True)
    got = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "H":
            got[parts[1]] = parts[2]
    bad = [p for p, d, _o in files if got.get(p.lstrip("/")) != hashlib.sha256(d).hexdigest()]
    if bad:
        raise UserError("verify failed for %d file(s) on %s (first: %s); run sipling flash again"
                        % (len(bad), port, bad[0]))
    say("sipling flash: verified %d files on the board (sha256); press RESET to start the app" % len(files))


def add_arguments(p):
    p.add_argument("--board", required=True, help="board name (boards/<name>) or path to a board.json")
    p.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0 (pyserial URLs work too)")
    p.add_argument("--image", help="image folder from sipling image, or a .bin (default build/<board>)")
    p.add_argument("--mpremote", action="store_true",
                   help="board already runs stock MicroPython: copy the app with mpremote instead")
    p.add_argument("--arch", help="with --mpremote: mpy-cross -march (default: the board's)")
    p.add_argument("--baud", type=int, default=BAUD, help="esptool baud rate (default %d)" % BAUD)
    p.add_argument("--no-reset", action="store_true",
                   help="do not reset into the bootloader (board already held in download mode)")
    p.add_argument("--no-verify", action="store_true", help="skip the read-back check")
    p.add_argument("--no-stub", action="store_true",
                   help="talk to the ROM bootloader only (esptool --no-stub; slower, for locked-down chips)")


def run(args):
    board = boards.load_board(args.board)
    boards.require_flash(board)
    if args.mpremote:
        check_port(args.port)
        mpremote_copy(board, args.port, arch=args.arch)
        return 0
    parts = regions(board, args.image or os.path.join("build", board["name"]))
    check_port(args.port)
    esptool_flash(board, args.port, parts, baud=args.baud,
                  before="no-reset" if args.no_reset else "default-reset", verify=not args.no_verify,
                  stub=not args.no_stub)
    return 0
