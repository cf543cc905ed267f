"""`sipling image`: the littlefs2 image is read back with littlefs-python and mounted by
MicroPython's own vfs.VfsLfs2 on the unix port; the merged image holds the firmware and the
filesystem at the board's offsets (checked by bytes and with `esptool image-info`)."""
import json
import os
import subprocess
import sys

import pytest

from sipling_host import boards, image
from sipling_host.errors import UserError

from peers import micropython

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
FLASH_BOARDS = ("esp32-generic", "esp32-s3", "esp32-c3", "esp32-cam")
# mpy-cross native arch codes (py/persistentcode.h MP_NATIVE_ARCH_*), header byte 2 >> 2
ARCH_CODE = {"x64": 2, "xtensawin": 10, "rv32imc": 11}

# Runs under the MicroPython unix port: a block device over the image file (the extended
# block protocol of MicroPython's vfs docs), mounted with vfs.VfsLfs2 exactly as the ESP32
# port mounts its vfs partition; lists every file with its sha256 and imports modules.
MOUNT_PY = r'''
import sys, os, vfs, json, hashlib, binascii

class FileBdev:
    def __init__(self, path, bs, count):
        self.f = open(path, "r+b")
        self.bs = bs
        self.f.seek(0, 2)
        self.n = count or self.f.tell() // bs
    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)
    def writeblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.write(buf)
    def ioctl(self, op, arg):
        if op == 4:   # block count
            return self.n
        if op == 5:   # block size
            return self.bs
        if op == 6:   # erase
            self.f.seek(arg * self.bs)
            self.f.write(b"\xff" * self.bs)
        return 0

def walk(d, out):
    for ent in os.ilistdir(d):
        p = d + "/" + ent[0]
        if ent[1] == 0x4000:
            walk(p, out)
        else:
            with open(p, "rb") as f:
                out[p[len("/img"):]] = binascii.hexlify(hashlib.sha256(f.read()).digest()).decode()

img, bs, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
try:
    vfs.mount(vfs.VfsLfs2(FileBdev(img, bs, count)), "/img")
except OSError as e:
    print(json.dumps({"mount_error": e.args[0]}))
    sys.exit(0)
files = {}
walk("/img", files)
sys.path[:] = ["/img"]
mods = {}
for m in sys.argv[4:]:
    __import__(m)
    mods[m] = sys.modules[m].__file__
with open("/img/written-on-device.txt", "w") as f:
    f.write("ok")
vfs.umount("/img")
print(json.dumps({"files": files, "mods": mods}))
'''


def _sha(data):
    import hashlib
    return hashlib.sha256(data).hexdigest()


def _sipling(*args, cwd=None, env=None):
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "host_tools") + os.pathsep + os.path.join(ROOT, "firmware"),
               **(env or {}))
    return subprocess.run([sys.executable, "-m", "sipling_host"] + list(args), capture_output=True,
                          text=True, env=env, cwd=cwd or ROOT, timeout=120)


def _one_line_error(r, *words):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipling: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def _fake_firmware(path, chip, banner=b""):
    """A valid ESP app image (checksum and sha256 appended) made with esptool's own image class:
    enough for merge-bin and `esptool image-info`, nothing a chip could run. ``banner`` is put
    in its data as a stock build has 'MicroPython v1.26.1 on 2025-...' in its rodata."""
    from esptool.bin_image import ELFSection, ESP32C3FirmwareImage, ESP32FirmwareImage, ESP32S3FirmwareImage
    cls, entry, dram = {"esp32": (ESP32FirmwareImage, 0x40080000, 0x3FFB0000),
                        "esp32s3": (ESP32S3FirmwareImage, 0x40378000, 0x3FC88000),
                        "esp32c3": (ESP32C3FirmwareImage, 0x40380000, 0x3FC80000)}[chip]
    img = cls()
    img.entrypoint = entry
    data = (b"sipling test firmware for %s\n" % chip.encode()) * 40 + banner
    img.segments = [ELFSection(b".dram0.data", dram, data + b"\0" * (-len(data) % 4), 0)]
    img.save(str(path))
    return str(path)


def _python_modules(files):
    return sorted(p[1:-4].replace("/", ".").replace(".__init__", "") for p in files
                  if p.startswith("/sipling/") and p.endswith(".mpy"))


@pytest.mark.parametrize("name", FLASH_BOARDS)
def test_image_reads_back_with_littlefs_python(name, tmp_path):
    board = boards.load_board(name)
    summary = image.build(board, str(tmp_path), say=lambda *_: None)
    data = (tmp_path / "vfs.bin").read_bytes()
    assert len(data) == board["vfs_blocks"] * 4096 == summary["vfs"]["size"]
    staged = image.stage(board)
    got = image.read_vfs(data, board)
    assert got == {p: d for p, d, _o in staged}
    # what went in: main.py (if the device engineer has written it) as source, the package as .mpy
    src_files = image.app_files(image.firmware_dir())
    want = {"/" + (r[:-3] + ".mpy" if r.startswith("sipling/") and r.endswith(".py") else r) for r in src_files}
    assert set(got) == want | {"/board.json"}
    assert json.loads(got["/board.json"])["capabilities"] == board["capabilities"]
    for p, d in got.items():
        if p.endswith(".mpy"):
            assert d[:2] == b"M\x06", p             # mpy v6 (MicroPython 1.20+)
            if d[2]:                                 # native code present: must be the board's arch
                assert d[2] >> 2 == ARCH_CODE[board["mpy_arch"]], p
    # the superblock carries MicroPython's geometry
    from littlefs import LittleFS
    from littlefs.context import UserContext
    ctx = UserContext(len(data))
    ctx.buffer[:] = data
    st = LittleFS(context=ctx, block_size=4096, block_count=0, mount=True, **image.LFS_SETTINGS).fs_stat()
    assert (st.block_count, st.block_size, st.name_max) == (board["vfs_blocks"], 4096, 255)


def test_micropython_vfslfs2_mounts_image_and_imports_mpy(tmp_path):
    mp = micropython()  # absolute: the runs below change cwd
    board = boards.load_board("esp32-generic")
    # x64 (this machine) so native/viper modules load too; xtensawin code cannot run here
    image.build(board, str(tmp_path), arch="host", say=lambda *_: None)
    data = (tmp_path / "vfs.bin").read_bytes()
    expect = image.read_vfs(data, board)
    mods = [m for m in _python_modules(expect) if not m.startswith("sipling.shell") and m != "sipling.app"]
    (tmp_path / "mount.py").write_text(MOUNT_PY)
    r = subprocess.run([mp, "mount.py", "vfs.bin", "4096", "0"] + mods, cwd=str(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["files"] == {p: _sha(d) for p, d in expect.items()}
    assert len(mods) > 5 and set(out["mods"]) == set(mods)
    for m, f in out["mods"].items():
        assert f.startswith("/img/sipling") and f.endswith(".mpy"), (m, f)
    # MicroPython wrote to it; littlefs-python still reads it (same on-disk format both ways)
    after = image.read_vfs((tmp_path / "vfs.bin").read_bytes(), board)
    assert after["/written-on-device.txt"] == b"ok"


def test_micropython_refuses_wrong_block_count(tmp_path):
    """Why the exact block count matters: the board's vfs partition size is what mount checks."""
    mp = micropython()
    board = boards.load_board("esp32-c3")
    image.build(board, str(tmp_path), say=lambda *_: None)
    (tmp_path / "mount.py").write_text(MOUNT_PY)
    r = subprocess.run([mp, "mount.py", "vfs.bin", "4096", str(board["vfs_blocks"] - 1)],
                       cwd=str(tmp_path), capture_output=True, text=True, timeout=60)
    assert json.loads(r.stdout) == {"mount_error": 22}  # EINVAL


@pytest.mark.parametrize("name", ("esp32-generic", "esp32-c3"))
def test_merged_image_offsets_and_esptool_image_info(name, tmp_path):
    board = boards.load_board(name)
    fw_off, vfs_off, vfs_size = boards.offsets(board)
    fw = _fake_firmware(tmp_path / "stock.bin", board["chip"])
    out = tmp_path / "out"
    r = _sipling("image", "--board", name, "--out", str(out), "--firmware", fw)
    assert r.returncode == 0, r.stderr
    assert "0x%x" % fw_off in r.stdout and "0x%x" % vfs_off in r.stdout
    full = (out / "full.bin").read_bytes()
    fw_bytes = open(fw, "rb").read()
    vfs = (out / "vfs.bin").read_bytes()
    # full.bin is flashed at the firmware offset: file offset 0 == flash address fw_off
    assert full[:len(fw_bytes)] == fw_bytes
    assert set(full[len(fw_bytes):vfs_off - fw_off]) == {0xFF}
    assert full[vfs_off - fw_off:] == vfs and len(vfs) == vfs_size
    assert len(full) == vfs_off - fw_off + vfs_size
    meta = json.loads((out / "image.json").read_text())
    assert meta["full"]["offset"] == hex(fw_off) and meta["vfs"]["offset"] == hex(vfs_off)
    # esptool recognises the firmware where the merged file puts it, for this chip
    (tmp_path / "at_fw.bin").write_bytes(full[:len(fw_bytes)])
    info = subprocess.run([sys.executable, "-m", "esptool", "image-info", str(tmp_path / "at_fw.bin")],
                          capture_output=True, text=True, timeout=60)
    assert info.returncode == 0, info.stdout + info.stderr
    assert "Detected image type: %s" % boards.CHIPS[board["chip"]][3] in info.stdout
    assert "Checksum: 0x" in info.stdout and "(valid)" in info.stdout
    assert image.read_vfs(full[vfs_off - fw_off:], board).keys() == image.read_vfs(vfs, board).keys()


def test_config_goes_to_sipling_json_and_is_validated(tmp_path):
    board = boards.load_board("esp32-generic")
    cfg = {"version": 1, "board": "esp32-generic",
           "identity": {"aor": "sip:door@example.test", "password": "s3cret"},
           "proxy": {"host": "192.0.2.10"}, "owners": ["sip:alice@example.test"],
           "secagree": {"mechanisms": ["digest"], "require_ipsec": False}}
    good = tmp_path / "dev.json"
    good.write_text(json.dumps(cfg))
    image.build(board, str(tmp_path / "a"), config=str(good), say=lambda *_: None)
    got = image.read_vfs((tmp_path / "a" / "vfs.bin").read_bytes(), board)
    assert got["/sipling.json"] == good.read_bytes()
    cfg["owners"] = []
    (tmp_path / "bad.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError) as e:
        image.stage(board, config=str(tmp_path / "bad.json"))
    assert "owners" in str(e.value) and "s3cret" not in str(e.value)
    cfg["owners"] = ["sip:alice@example.test"]
    cfg["board"] = "esp32-c3"
    (tmp_path / "other.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="is for board esp32-c3, not esp32-generic"):
        image.stage(board, config=str(tmp_path / "other.json"))


def test_cli_unknown_board_lists_boards():
    line = _one_line_error(_sipling("image", "--board", "esp8266"), "unknown board 'esp8266'")
    for b in FLASH_BOARDS:
        assert b in line


def test_cli_image_too_big(tmp_path):
    tiny = json.loads(open(os.path.join(ROOT, "boards", "esp32-generic", "board.json")).read())
    tiny.update(name="tiny", flash_size="2MB", vfs_offset="0x1F8000", vfs_blocks=8)
    (tmp_path / "tiny.json").write_text(json.dumps(tiny))
    _one_line_error(_sipling("image", "--board", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "o")),
                    "image too big", "holds 32 KiB")
    assert not (tmp_path / "o" / "vfs.bin").exists()


def test_cli_firmware_errors(tmp_path):
    out = str(tmp_path / "o")
    _one_line_error(_sipling("image", "--board", "esp32-s3", "--out", out, "--firmware", str(tmp_path / "nope.bin")),
                    "No such file", "ESP32_GENERIC_S3")
    (tmp_path / "text.bin").write_bytes(b"this is not firmware" * 10)
    _one_line_error(_sipling("image", "--board", "esp32-s3", "--out", out, "--firmware", str(tmp_path / "text.bin")),
                    "not an ESP firmware image")
    fw = _fake_firmware(tmp_path / "c3.bin", "esp32c3")
    _one_line_error(_sipling("image", "--board", "esp32-s3", "--out", out, "--firmware", fw),
                    "is for ESP32-C3, but board esp32-s3 is ESP32-S3")
    _one_line_error(_sipling("image", "--board", "sim", "--out", out), "simulated")


def test_firmware_version_must_load_our_mpy(tmp_path):
    """Native (viper) code in an .mpy loads only on the MicroPython whose mpy sub-version
    matches mpy-cross's (v6.3 since 1.23); older boards fail at import, so refuse up front."""
    fw = tmp_path / "src"
    (fw / "sipling").mkdir(parents=True)
    (fw / "main.py").write_text("import sipling\n")
    (fw / "sipling" / "__init__.py").write_text(
        "import micropython\n\n@micropython.viper\ndef inc(x: int) -> int:\n    return x + 1\n")
    env = {"SIPLING_FIRMWARE": str(fw)}
    old = _fake_firmware(tmp_path / "old.bin", "esp32", b"MicroPython v1.22.2 on 2024-02-22; Generic ESP32 module")
    new = _fake_firmware(tmp_path / "new.bin", "esp32", b"MicroPython v1.26.1 on 2025-09-11; Generic ESP32 module")
    ancient = _fake_firmware(tmp_path / "ancient.bin", "esp32", b"MicroPython v1.18 on 2022-01-17")
    assert image.firmware_version(old) == (1, 22) and image.firmware_version(new) == (1, 26)
    out = str(tmp_path / "o")
    _one_line_error(_sipling("image", "--board", "esp32-generic", "--out", out, "--firmware", old, env=env),
                    "MicroPython v1.22 but /sipling/__init__.mpy has native code", "v1.23 and later")
    _one_line_error(_sipling("image", "--board", "esp32-generic", "--out", out, "--firmware", ancient, env=env),
                    "too old for .mpy v6")
    r = _sipling("image", "--board", "esp32-generic", "--out", out, "--firmware", new, env=env)
    assert r.returncode == 0 and "new.bin MicroPython v1.26" in r.stdout, r.stdout + r.stderr


def test_image_says_when_the_code_will_not_fit_a_board_without_psram(tmp_path):
    said = []
    image.build(boards.load_board("esp32-generic"), str(tmp_path / "g"), say=said.append)
    notes = [s for s in said if "note:" in s]
    assert len(notes) == 1 and "no PSRAM" in notes[0] and "freeze it into the firmware" in notes[0]
    said = []
    image.build(boards.load_board("esp32-generic"), str(tmp_path / "f"), frozen=True, say=said.append)
    assert not [s for s in said if "note:" in s]          # code frozen in flash: nothing to say
    said = []
    image.build(boards.load_board("esp32-cam"), str(tmp_path / "c"), say=said.append)
    assert not [s for s in said if "note:" in s]          # PSRAM: the heap is megabytes
