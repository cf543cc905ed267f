"""`sipling flash` without hardware: error paths on ptys (missing, busy, permission, wrong chip
answered by a fake ROM bootloader speaking esptool's SLIP protocol), image selection, and the
mpremote path against the MicroPython unix port behind a pty (sipling_host.ptyboard)."""
import fcntl
import hashlib
import json
import os
import pwd
import select
import struct
import subprocess
import sys
import threading
import zlib

import pytest

from sipling_host import boards, flash, image
from sipling_host.errors import UserError

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))


def _sipling(*args, env=None, user=None, timeout=120):
    e = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "host_tools") + os.pathsep + os.path.join(ROOT, "firmware"))
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "sipling_host"] + list(args), capture_output=True, text=True,
                          env=e, cwd=ROOT, timeout=timeout, user=user)


def _one_line_error(r, *words):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sipling: "), r.stderr
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert [l for l in lines if l.startswith("sipling: ")] == [lines[-1]]
    for w in words:
        assert w in lines[-1], (w, lines[-1])
    return lines[-1]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("img") / "esp32-generic"
    image.build(boards.load_board("esp32-generic"), str(out), say=lambda *_: None)
    return str(out)


@pytest.fixture
def pty_pair():
    m, s = os.openpty()
    path = os.ttyname(s)
    yield m, s, path
    for fd in (m, s):
        try:
            os.close(fd)
        except OSError:
            pass


def test_missing_port(built, tmp_path):
    _one_line_error(_sipling("flash", "--board", "esp32-generic", "--port", str(tmp_path / "ttyUSB9"), "--image", built),
                    "port %s not found" % (tmp_path / "ttyUSB9"))


def test_busy_port_names_the_holder(built, pty_pair):
    _m, s, path = pty_pair
    fcntl.flock(s, fcntl.LOCK_EX | fcntl.LOCK_NB)   # what esptool/mpremote/pyserial(exclusive) do
    line = _one_line_error(_sipling("flash", "--board", "esp32-generic", "--port", path, "--image", built),
                           "port %s is busy" % path)
    assert "pid %d" % os.getpid() in line


def test_permission_denied_says_dialout(built, pty_pair):
    """The CLI run in a child process that cannot open the port (as root: dropped to nobody,
    since root opens any device; the pty is 0600 root)."""
    _m, _s, path = pty_pair
    os.chmod(path, 0o600 if os.geteuid() == 0 else 0)
    import shutil
    import tempfile
    pub = tempfile.mkdtemp(prefix="sipling-img-")       # readable by nobody, unlike pytest's tmp
    for f in ("vfs.bin", "image.json"):
        shutil.copy(os.path.join(built, f), pub)
    os.chmod(pub, 0o755)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:                                         # child: never returns into pytest
        rc = 99
        try:
            sys.stderr = os.fdopen(w, "w")
            sys.stdout = open(os.devnull, "w")
            if os.geteuid() == 0:
                nobody = pwd.getpwnam("nobody")
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
            from sipling_host import cli
            rc = cli.main(["flash", "--board", "esp32-generic", "--port", path, "--image", pub])
            sys.stderr.flush()
        finally:
            os._exit(rc)
    os.close(w)
    err = b""
    while True:
        chunk = os.read(r, 4096)
        if not chunk:
            break
        err += chunk
    os.close(r)
    _pid, status = os.waitpid(pid, 0)
    shutil.rmtree(pub)
    res = subprocess.CompletedProcess([], os.waitstatus_to_exitcode(status), "", err.decode())
    _one_line_error(res, "permission denied on %s" % path, "dialout group")


def test_image_selection(built, tmp_path):
    gen = boards.load_board("esp32-generic")
    assert flash.regions(gen, built) == [(0x200000, os.path.join(built, "vfs.bin"), "filesystem")]
    assert flash.regions(gen, os.path.join(built, "vfs.bin"))[0][0] == 0x200000
    with pytest.raises(UserError, match="was built for board esp32-generic, not esp32-cam"):
        flash.regions(boards.load_board("esp32-cam"), built)
    with pytest.raises(UserError, match="has 512 blocks but the vfs partition of esp32-s3 has 1536"):
        s3 = boards.load_board("esp32-s3")
        flash.regions(s3, os.path.join(built, "vfs.bin"))
    with pytest.raises(UserError, match="no image in"):
        flash.regions(gen, str(tmp_path))
    (tmp_path / "x.bin").write_bytes(b"\0" * 8192)
    with pytest.raises(UserError, match="neither an ESP firmware image nor a littlefs image"):
        flash.regions(gen, str(tmp_path / "x.bin"))
    # a merged image goes to the firmware offset
    from test_image import _fake_firmware
    fw = _fake_firmware(tmp_path / "fw.bin", "esp32c3")
    c3 = boards.load_board("esp32-c3")
    image.build(c3, str(tmp_path / "c3"), firmware=fw, say=lambda *_: None)
    assert flash.regions(c3, str(tmp_path / "c3")) == [(0, str(tmp_path / "c3" / "full.bin"), "firmware + filesystem")]
    with pytest.raises(UserError, match="not a firmware image for ESP32 "):
        flash.regions(gen, str(tmp_path / "c3" / "full.bin"))


def test_cli_no_image_and_sim_board(tmp_path):
    _one_line_error(_sipling("flash", "--board", "esp32-s3", "--port", "loop://", "--image", str(tmp_path)),
                    "no image in", "sipling image --board esp32-s3")
    _one_line_error(_sipling("flash", "--board", "sim", "--port", "loop://"), "simulated")
    _one_line_error(_sipling("flash", "--board", "esp32", "--port", "loop://"), "unknown board 'esp32'", "esp32-generic")


class FakeRom(threading.Thread):
    """The ROM bootloader of an ESP32 / ESP32-S3 / ESP32-C3 in download mode, as far as esptool
    goes with --no-stub: SLIP framing, SYNC, chip detection (magic register on ESP32, chip id
    from GET_SECURITY_INFO on later chips), FLASH_BEGIN/DATA (plain and deflated) into a flash
    bytearray, SPI_FLASH_MD5 for verification (esptool loader.py and its ROM docs)."""
    MAGIC = {"esp32": 0x00F01D83}
    CHIP_ID = {"esp32s3": 9, "esp32c3": 5}

    def __init__(self, fd, chip="esp32", flash_size=4 << 20, corrupt_at=None):
        super().__init__(daemon=True)
        self.corrupt_at = corrupt_at     # flash address whose byte a bad flash chip flips
        self.fd, self.chip, self.ops = fd, chip, []
        self.flash = bytearray(b"\xff" * flash_size)
        self.stop = False
        self.written = []   # (offset, length) per FLASH_*BEGIN
        self._z = None

    def _send(self, op, val=0, data=b"", status=b"\0\0\0\0"):
        body = struct.pack("<BBHI", 1, op, len(data) + len(status), val) + data + status
        body = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(self.fd, b"\xc0" + body + b"\xc0")

    def handle(self, op, d):
        if op == 0x08:                       # SYNC
            for _ in range(8):
                self._send(op, val=0x12345678)
        elif op == 0x14:                     # GET_SECURITY_INFO
            if self.chip in self.CHIP_ID:
                self._send(op, data=struct.pack("<IB7sII", 0, 0, b"\0" * 7, self.CHIP_ID[self.chip], 0))
            else:
                self._send(op, status=b"\x01\x05\0\0")   # ESP32 ROM: unknown command
        elif op == 0x0A:                     # READ_REG
            addr = struct.unpack_from("<I", d)[0]
            self._send(op, val=self.MAGIC.get(self.chip, 0) if addr == 0x40001000 else 0)
        elif op in (0x02, 0x10):             # FLASH_BEGIN / FLASH_DEFL_BEGIN
            _size, _n, self.bs, self.off = struct.unpack_from("<IIII", d)
            self.pos = self.off
            self._z = zlib.decompressobj() if op == 0x10 else None
            self.written.append([self.off, 0])
            self._send(op)
        elif op in (0x03, 0x11):             # FLASH_DATA / FLASH_DEFL_DATA
            n, _seq = struct.unpack_from("<II", d)
            chunk = d[16:16 + n]
            if self._z is not None:
                chunk = self._z.decompress(chunk)
            self.flash[self.pos:self.pos + len(chunk)] = chunk
            self.pos += len(chunk)
            self.written[-1][1] += len(chunk)
            if self.corrupt_at is not None and self.pos - len(chunk) <= self.corrupt_at < self.pos:
                self.flash[self.corrupt_at] ^= 0x01
            self._send(op)
        elif op == 0x13:                     # SPI_FLASH_MD5: ROM answers 32 hex digits
            addr, size = struct.unpack_from("<II", d)
            self._send(op, data=hashlib.md5(self.flash[addr:addr + size]).hexdigest().encode())
        else:                                # SPI_ATTACH, SPI_SET_PARAMS, WRITE_REG, *_END, ...
            self._send(op)

    def run(self):
        buf = b""
        while not self.stop:
            if not select.select([self.fd], [], [], 0.05)[0]:
                continue
            try:
                buf += os.read(self.fd, 65536)
            except OSError:
                return
            while buf.count(b"\xc0") >= 2:
                start = buf.index(b"\xc0")
                end = buf.index(b"\xc0", start + 1)
                frame, buf = buf[start + 1:end], buf[end:]
                if not frame:
                    continue
                frame = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
                self.ops.append(frame[1])
                self.handle(frame[1], frame[8:])


def test_wrong_chip_answered_by_fake_rom(built, pty_pair):
    m, _s, path = pty_pair
    rom = FakeRom(m, chip="esp32s3")
    rom.start()
    try:
        r = _sipling("flash", "--board", "esp32-generic", "--port", path, "--image", built, "--no-reset")
    finally:
        rom.stop = True
        rom.join(2)
    _one_line_error(r, "wrong board: %s has an ESP32-S3, but board esp32-generic is ESP32; use --board esp32-s3" % path)
    assert 0x08 in rom.ops and 0x14 in rom.ops
    assert "Connecting" in r.stdout                      # esptool's own output is shown


def _small_firmware(tmp_path):
    fw = tmp_path / "fw"
    (fw / "sipling" / "sub").mkdir(parents=True)
    (fw / "main.py").write_text("import sipling\nprint('app', sipling.VERSION)\n")
    (fw / "sipling" / "__init__.py").write_text("VERSION = 'test-1'\n")
    (fw / "sipling" / "sub" / "__init__.py").write_text("")
    (fw / "sipling" / "sub" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    (fw / "sipling" / "sub" / "fast.py").write_text(
        "import micropython\n\n@micropython.viper\ndef inc(x: int) -> int:\n    return x + 1\n")
    return str(fw)


def test_mpremote_copies_app_to_a_board_running_micropython(tmp_path):
    from sipling_host.ptyboard import PtyBoard
    from peers import micropython
    mp = micropython()
    stub = tmp_path / "stock.py"
    stub.write_text("print('stock MicroPython')\n")        # a board with nothing but the REPL
    fs = tmp_path / "boardfs"
    (fs / "sipling").mkdir(parents=True)
    (fs / "sipling" / "old.py").write_text("STALE = 1\n")  # a previous install: must go
    (fs / "sipling.json").write_text('{"keep": "me"}')     # the device config: must stay
    env = {"SIPLING_FIRMWARE": _small_firmware(tmp_path)}
    with PtyBoard(str(stub), cwd=str(fs), link=str(tmp_path / "board.tty"), micropath=[".frozen"],
                  micropython=mp) as b:
        b.wait_output(b">>>", timeout=10)
        # xtensawin viper code cannot run on this x64 "board": refused before anything is touched
        _one_line_error(_sipling("flash", "--board", "esp32-generic", "--port", b.path, "--mpremote", env=env),
                        "wrong board: the MicroPython on %s runs x64 code" % b.path, "compiled for xtensawin")
        assert (fs / "sipling" / "old.py").exists()
        r = _sipling("flash", "--board", "esp32-generic", "--port", b.path, "--mpremote", "--arch", "host", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "verified 6 files on the board" in r.stdout
        check = subprocess.run([sys.executable, "-m", "mpremote", "connect", b.path, "resume", "exec",
                                "import sipling.sub.calc as c, sipling.sub.fast as f; "
                                "print(c.__file__, c.add(2, 3), f.inc(41))"],
                               capture_output=True, text=True, timeout=60)
        assert check.stdout.split() == ["sipling/sub/calc.mpy", "5", "42"], check.stdout + check.stderr
    assert not (fs / "sipling" / "old.py").exists()
    assert (fs / "sipling.json").read_text() == '{"keep": "me"}'
    assert json.loads((fs / "board.json").read_text())["name"] == "esp32-generic"
    assert (fs / "main.py").read_text().startswith("import sipling")
    assert sorted(os.listdir(fs / "sipling")) == ["__init__.mpy", "sub"]


def _tiny_board(tmp_path):
    """esp32-generic with a 32 KiB vfs (2 MiB flash, vfs at 0x1F8000) so a write through the
    fake ROM takes a fraction of a second."""
    b = json.loads(open(os.path.join(ROOT, "boards", "esp32-generic", "board.json")).read())
    b.update(name="tiny", flash_size="2MB", vfs_offset="0x1F8000", vfs_blocks=8)
    (tmp_path / "tiny.json").write_text(json.dumps(b))
    fw = tmp_path / "fw"
    (fw / "sipling").mkdir(parents=True)
    (fw / "main.py").write_text("import sipling\n")
    (fw / "sipling" / "__init__.py").write_text("VERSION = 'tiny'\n")
    env = {"SIPLING_FIRMWARE": str(fw)}
    r = _sipling("image", "--board", str(tmp_path / "tiny.json"), "--out", str(tmp_path / "img"), env=env)
    assert r.returncode == 0, r.stderr
    return str(tmp_path / "tiny.json"), str(tmp_path / "img")


def test_esptool_writes_vfs_at_its_offset_and_verifies(tmp_path, pty_pair):
    m, _s, path = pty_pair
    board, img = _tiny_board(tmp_path)
    rom = FakeRom(m, chip="esp32", flash_size=2 << 20)
    rom.start()
    try:
        r = _sipling("flash", "--board", board, "--port", path, "--image", img, "--no-reset", "--no-stub")
    finally:
        rom.stop = True
        rom.join(2)
    assert r.returncode == 0, r.stdout + r.stderr
    vfs = open(os.path.join(img, "vfs.bin"), "rb").read()
    assert rom.written == [[0x1F8000, len(vfs)]] and len(vfs) == 8 * 4096
    assert bytes(rom.flash[0x1F8000:0x200000]) == vfs
    assert set(rom.flash[:0x1F8000]) == {0xFF}           # nothing else touched
    assert rom.ops.count(0x13) >= 2                      # MD5 after write-flash and in verify-flash
    assert "Writing at 0x001f8400" in r.stdout and "Hash of data verified" in r.stdout   # esptool's own
    assert "verified 1 region(s)" in r.stdout
    assert image.read_vfs(bytes(rom.flash[0x1F8000:]), boards.load_board(board))["/main.py"] == b"import sipling\n"


def test_flash_that_does_not_keep_data_fails_one_line(tmp_path, pty_pair):
    m, _s, path = pty_pair
    board, img = _tiny_board(tmp_path)
    rom = FakeRom(m, chip="esp32", flash_size=2 << 20, corrupt_at=0x1F8000 + 5000)
    rom.start()
    try:
        r = _sipling("flash", "--board", board, "--port", path, "--image", img, "--no-reset", "--no-stub")
    finally:
        rom.stop = True
        rom.join(2)
    _one_line_error(r, "the flash on %s does not hold what was written (MD5 mismatch)" % path)
