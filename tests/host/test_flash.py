"""`sipling flash` without hardware: error paths on ptys (missing, busy, permission, wrong chip
answered by a fake ROM bootloader speaking esptool's SLIP protocol), image selection, and the
mpremote path against the MicroPython unix port behind a pty (sipling_host.ptyboard)."""
import fcntl
import json
import os
import pwd
import struct
import subprocess
import sys
import threading

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
    """The ROM bootloader of an ESP32-S3 in download mode, as far as esptool's connect goes:
    SLIP frames (RFC 1055 framing), SYNC answered, GET_SECURITY_INFO reporting chip id 9."""

    def __init__(self, fd, chip_id=9):
        super().__init__(daemon=True)
        self.fd, self.chip_id, self.ops = fd, chip_id, []
        self.stop = False

    def _send(self, op, val=0, data=b""):
        body = struct.pack("<BBHI", 1, op, len(data) + 4, val) + data + b"\0\0\0\0"
        body = body.replace(b"\xdb", b"\xdb\xdd").replace(b"\xc0", b"\xdb\xdc")
        os.write(self.fd, b"\xc0" + body + b"\xc0")

    def run(self):
        import select
        buf = b""
        while not self.stop:
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            try:
                buf += os.read(self.fd, 4096)
            except OSError:
                return
            while buf.count(b"\xc0") >= 2:
                start = buf.index(b"\xc0")
                end = buf.index(b"\xc0", start + 1)
                frame, buf = buf[start + 1:end], buf[end:]
                if not frame:
                    continue
                frame = frame.replace(b"\xdb\xdc", b"\xc0").replace(b"\xdb\xdd", b"\xdb")
                op = frame[1]
                self.ops.append(op)
                if op == 0x08:                          # SYNC: the ROM answers 8 times
                    for _ in range(8):
                        self._send(op, val=0x12345678)
                elif op == 0x14:                        # GET_SECURITY_INFO (S2 and later ROMs)
                    self._send(op, data=struct.pack("<IB7sII", 0, 0, b"\0" * 7, self.chip_id, 0))
                else:
                    self._send(op)


def test_wrong_chip_answered_by_fake_rom(built, pty_pair):
    m, _s, path = pty_pair
    rom = FakeRom(m)
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
    return str(fw)


def test_mpremote_copies_app_to_a_board_running_micropython(tmp_path):
    from sipling_host.ptyboard import PtyBoard, micropython_path
    if not os.path.exists(micropython_path()):
        pytest.skip("MicroPython unix port missing (make setup installs it)")
    stub = tmp_path / "stock.py"
    stub.write_text("print('stock MicroPython')\n")        # a board with nothing but the REPL
    fs = tmp_path / "boardfs"
    (fs / "sipling").mkdir(parents=True)
    (fs / "sipling" / "old.py").write_text("STALE = 1\n")  # a previous install: must go
    (fs / "sipling.json").write_text('{"keep": "me"}')     # the device config: must stay
    env = {"SIPLING_FIRMWARE": _small_firmware(tmp_path)}
    with PtyBoard(str(stub), cwd=str(fs), link=str(tmp_path / "board.tty"), micropath=[".frozen"]) as b:
        b.wait_output(b">>>", timeout=10)
        r = _sipling("flash", "--board", "esp32-generic", "--port", b.path, "--mpremote", "--arch", "host", env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "verified 5 files on the board" in r.stdout
        check = subprocess.run([sys.executable, "-m", "mpremote", "connect", b.path, "resume", "exec",
                                "import sipling.sub.calc as c; print(c.__file__, c.add(2, 3))"],
                               capture_output=True, text=True, timeout=60)
        assert check.stdout.split() == ["sipling/sub/calc.mpy", "5"], check.stdout + check.stderr
    assert not (fs / "sipling" / "old.py").exists()
    assert (fs / "sipling.json").read_text() == '{"keep": "me"}'
    assert json.loads((fs / "board.json").read_text())["name"] == "esp32-generic"
    assert (fs / "main.py").read_text().startswith("import sipling")
    assert sorted(os.listdir(fs / "sipling")) == ["__init__.mpy", "sub"]
