"""Board descriptions: boards/<name>/board.json, loaded and checked.

A board file says which chip it is, where stock MicroPython and its ``vfs`` partition live
in flash, which mpy-cross architecture its .mpy files need, and what is wired to which pin
(``capabilities``, read by the device app). See boards/README.md for the schema.

Public API: :func:`boards_dir`, :func:`list_boards`, :func:`load_board`,
:func:`validate`, :func:`require_flash`, :func:`flash_bytes`, :func:`boards_for_chip`.
"""
import json
import os

from .errors import UserError
from .paths import boards_dir

# chip -> (esptool --chip name, ESP image header chip id, mpy-cross archs that run on it,
#          human name esptool prints). Chip ids: esptool targets' IMAGE_CHIP_ID.
CHIPS = {
    "esp32": ("esp32", 0, ("xtensawin",), "ESP32"),
    "esp32s3": ("esp32s3", 9, ("xtensawin",), "ESP32-S3"),
    "esp32c3": ("esp32c3", 5, ("rv32imc",), "ESP32-C3"),
}
# Chips a board file may name without a flash layout (the simulated board on the unix port).
HOSTED_CHIPS = ("unix",)

# Where stock MicroPython (v1.20+, ports/esp32) creates its vfs partition and its lfs2 settings.
VFS_BLOCK_SIZE = 4096
_SIZES = {"2MB": 2, "4MB": 4, "8MB": 8, "16MB": 16, "32MB": 32}
_KINDS = ("actuator", "button", "sensor")  # what firmware/sipling/shell/board.py accepts
_FLASH_KEYS = ("flash_size", "firmware_offset", "vfs_offset", "vfs_block_size", "vfs_blocks",
               "mpy_arch", "psram", "heap_kb")


def list_boards(directory=None):
    """Sorted names of the folders under boards/ that hold a board.json."""
    d = directory or boards_dir()
    try:
        names = os.listdir(d)
    except OSError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(d, n, "board.json")))


def flash_bytes(size):
    """'4MB' -> 4194304; raises ValueError for a size no ESP32 module ships with."""
    if size not in _SIZES:
        raise ValueError("flash_size %r is not one of %s" % (size, ", ".join(_SIZES)))
    return _SIZES[size] << 20


def _hex(board, key):
    v = board[key]
    if not isinstance(v, str) or not v.startswith("0x"):
        raise ValueError("%s must be a hex string such as \"0x1000\", not %r" % (key, v))
    return int(v, 16)


def validate(board):
    """Check a loaded board dict; return a list of problems (empty when it is good).

    Every rule here is a way a board file could brick or confuse a real board: a vfs block
    count that is not exactly the partition's makes MicroPython print "filesystem appears
    to be corrupted" at every boot.
    """
    problems = []
    if not isinstance(board.get("name"), str) or not board.get("name"):
        problems.append("name missing")
    chip = board.get("chip")
    caps = board.get("capabilities")
    if not isinstance(caps, dict):
        problems.append("capabilities must be an object")
    else:
        for cname, cap in caps.items():
            if not isinstance(cap, dict) or cap.get("kind") not in _KINDS:
                problems.append("capability %s: kind must be one of %s" % (cname, ", ".join(_KINDS)))
                continue
            pin = cap.get("pin")
            if cap["kind"] in ("actuator", "button") and not isinstance(pin, int):
                problems.append("capability %s: pin must be a GPIO number" % cname)
            if cap["kind"] == "sensor" and not cap.get("driver"):
                problems.append("capability %s: sensor needs a driver" % cname)
    if chip in HOSTED_CHIPS:
        return problems
    if chip not in CHIPS:
        problems.append("chip %r is not one of %s" % (chip, ", ".join(list(CHIPS) + list(HOSTED_CHIPS))))
        return problems
    missing = [k for k in _FLASH_KEYS if k not in board]
    if missing:
        problems.append("missing " + ", ".join(missing))
        return problems
    try:
        total = flash_bytes(board["flash_size"])
        fw = _hex(board, "firmware_offset")
        vfs = _hex(board, "vfs_offset")
    except ValueError as e:
        problems.append(str(e))
        return problems
    want_fw = 0x1000 if chip == "esp32" else 0x0
    if fw != want_fw:
        problems.append("firmware_offset of %s is 0x%x (the ROM bootloader loads it there), not 0x%x"
                        % (chip, want_fw, fw))
    if board["vfs_block_size"] != VFS_BLOCK_SIZE:
        problems.append("vfs_block_size must be %d (the flash erase sector)" % VFS_BLOCK_SIZE)
    if vfs % VFS_BLOCK_SIZE or not fw < vfs < total:
        problems.append("vfs_offset 0x%x must be sector-aligned and inside the %s flash"
                        % (vfs, board["flash_size"]))
    elif board["vfs_blocks"] != (total - vfs) // VFS_BLOCK_SIZE:
        problems.append("vfs_blocks must be %d: the vfs partition runs from 0x%x to the end of %s"
                        % ((total - vfs) // VFS_BLOCK_SIZE, vfs, board["flash_size"]))
    if board["mpy_arch"] not in CHIPS[chip][2]:
        problems.append("mpy_arch for %s must be %s" % (chip, " or ".join(CHIPS[chip][2])))
    if not isinstance(board["psram"], bool):
        problems.append("psram must be true or false")
    if not isinstance(board["heap_kb"], int) or board["heap_kb"] <= 0:
        problems.append("heap_kb must be a positive integer")
    return problems


def load_board(name_or_path, directory=None):
    """Load and validate a board by name (boards/<name>/board.json) or by a path to a board.json.

    Raises UserError naming the known boards when the name is unknown, or the first problems
    when the file is not a valid board description.
    """
    d = directory or boards_dir()
    if os.sep in name_or_path or name_or_path.endswith(".json"):
        path = name_or_path
    else:
        path = os.path.join(d, name_or_path, "board.json")
    if not os.path.isfile(path):
        raise UserError("unknown board %r; known boards: %s (or give a path to a board.json)"
                        % (name_or_path, ", ".join(list_boards(d)) or "none"))
    try:
        with open(path) as f:
            board = json.load(f)
    except ValueError as e:
        raise UserError("%s is not valid JSON (%s); fix the file" % (path, e))
    if not isinstance(board, dict):
        raise UserError("%s must hold a JSON object" % path)
    problems = validate(board)
    if problems:
        raise UserError("%s: %s" % (path, "; ".join(problems)))
    board["_path"] = os.path.abspath(path)
    return board


def require_flash(board):
    """Raise UserError unless the board is a real chip with a flash layout."""
    if board.get("chip") not in CHIPS:
        raise UserError("board %s is simulated (chip %s) and has no flash; pick one of %s"
                        % (board.get("name"), board.get("chip"),
                           ", ".join(n for n in list_boards() if _is_flash_board(n))))


def _is_flash_board(name):
    try:
        with open(os.path.join(boards_dir(), name, "board.json")) as f:
            return json.load(f).get("chip") in CHIPS
    except (OSError, ValueError):
        return False


def boards_for_chip(chip):
    """Names of the known boards built on ``chip`` (e.g. 'esp32s3')."""
    out = []
    for n in list_boards():
        try:
            with open(os.path.join(boards_dir(), n, "board.json")) as f:
                if json.load(f).get("chip") == chip:
                    out.append(n)
        except (OSError, ValueError):
            pass
    return out


def offsets(board):
    """(firmware_offset, vfs_offset, vfs_size) as ints for a flash board."""
    vfs = int(board["vfs_offset"], 16)
    return int(board["firmware_offset"], 16), vfs, board["vfs_blocks"] * board["vfs_block_size"]


def describe(name):
    """One line about a board: name, chip, flash, firmware and vfs layout, mpy arch."""
    b = load_board(name)
    if b["chip"] not in CHIPS:
        return "%-14s %-9s simulated (MicroPython unix port)" % (name, b["chip"])
    return ("%-14s %-9s %4s flash, firmware at %-6s vfs at %s (%4d blocks), %-9s %s"
            % (name, b["chip"], b["flash_size"], b["firmware_offset"], b["vfs_offset"], b["vfs_blocks"],
               b["mpy_arch"], "PSRAM" if b["psram"] else ""))


def main(argv=None):
    """`python -m sipling_host.boards`: list the known boards (a problem line for a broken one)."""
    import sys
    rc = 0
    for n in list_boards():
        try:
            print(describe(n).rstrip())
        except UserError as e:
            print("%-14s %s" % (n, e))
            rc = 1
    sys.stdout.flush()
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
