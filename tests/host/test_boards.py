"""boards/*/board.json and manifest.py, boards.py validation, and firmware/package.json (mip)."""
import json
import os

import pytest

from sipling_host import boards, image, mipgen
from sipling_host.errors import UserError

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
FLASH_BOARDS = ("esp32-generic", "esp32-s3", "esp32-c3", "esp32-cam")


def _load(name):
    with open(os.path.join(ROOT, "boards", name, "board.json")) as f:
        return json.load(f)


def test_every_board_folder_is_valid_and_listed():
    names = boards.list_boards()
    for n in FLASH_BOARDS:
        assert n in names
    for n in names:
        b = boards.load_board(n)
        assert b["name"] == n
        assert boards.validate(_load(n)) == []


def test_flash_layout_facts():
    # ESP32 port facts (MicroPython ports/esp32): app image offset, vfs from 0x200000 to the end
    # of flash in 4096-byte blocks, mpy-cross arch per core.
    want = {"esp32-generic": ("esp32", "0x1000", 512, "xtensawin"),
            "esp32-s3": ("esp32s3", "0x0", 1536, "xtensawin"),
            "esp32-c3": ("esp32c3", "0x0", 512, "rv32imc"),
            "esp32-cam": ("esp32", "0x1000", 512, "xtensawin")}
    for n, (chip, fw, blocks, arch) in want.items():
        b = _load(n)
        assert (b["chip"], b["firmware_offset"], b["vfs_offset"], b["vfs_blocks"], b["mpy_arch"]) == \
            (chip, fw, "0x200000", blocks, arch)
        assert boards.flash_bytes(b["flash_size"]) - 0x200000 == blocks * 4096
    assert _load("esp32-cam")["psram"] is True
    assert _load("esp32-cam")["capabilities"]["flash_led"]["pin"] == 4   # AI-Thinker flash LED


def test_capabilities_load_in_the_device_board_driver():
    # the device app's own loader (firmware/sipling/shell/board.py) accepts every board file
    from sipling.shell import board as devboard
    for n in FLASH_BOARDS:
        d = devboard.load_desc(os.path.join(ROOT, "boards", n, "board.json"))
        for cap in ("relay", "led", "button", "temperature"):
            assert cap in d["capabilities"], (n, cap)


@pytest.mark.parametrize("change,problem", [
    ({"vfs_blocks": 511}, "vfs_blocks must be 512"),
    ({"firmware_offset": "0x0"}, "firmware_offset of esp32 is 0x1000"),
    ({"firmware_offset": 4096}, "hex string"),
    ({"mpy_arch": "rv32imc"}, "mpy_arch for esp32 must be xtensawin"),
    ({"chip": "esp8266"}, "chip 'esp8266' is not one of"),
    ({"flash_size": "3MB"}, "flash_size '3MB'"),
    ({"vfs_offset": "0x200100"}, "sector-aligned"),
    ({"psram": "no"}, "psram must be true or false"),
    ({"capabilities": {"relay": {"kind": "motor", "pin": 1}}}, "capability relay: kind"),
    ({"capabilities": {"relay": {"kind": "actuator"}}}, "capability relay: pin"),
])
def test_validate_names_the_problem(change, problem):
    b = _load("esp32-generic")
    b.update(change)
    problems = boards.validate(b)
    assert len(problems) == 1 and problem in problems[0], problems


def test_missing_keys_and_unknown_board(tmp_path):
    b = _load("esp32-s3")
    del b["vfs_blocks"], b["heap_kb"]
    assert boards.validate(b) == ["missing vfs_blocks, heap_kb"]
    with pytest.raises(UserError) as e:
        boards.load_board("esp32-s2")
    assert "unknown board 'esp32-s2'" in str(e.value) and "esp32-generic" in str(e.value)
    (tmp_path / "b.json").write_text("{not json")
    with pytest.raises(UserError, match="is not valid JSON"):
        boards.load_board(str(tmp_path / "b.json"))
    sim = boards.load_board("sim")
    with pytest.raises(UserError, match="simulated"):
        boards.require_flash(sim)
    assert boards.boards_for_chip("esp32") == ["esp32-cam", "esp32-generic"]


@pytest.mark.parametrize("name", FLASH_BOARDS)
def test_manifest_freezes_the_sipling_package(name):
    """Run manifest.py with MicroPython's manifest functions stubbed (tools/manifestfile.py
    resolves relative paths against the manifest's own folder) and check what it points at."""
    here = os.path.join(ROOT, "boards", name)
    calls = []
    env = {
        "include": lambda p, **kw: calls.append(("include", p)),
        "package": lambda n, files=None, base_path=".", opt=None: calls.append(
            ("package", n, os.path.normpath(os.path.join(here, base_path)))),
        "module": lambda *a, **kw: calls.append(("module",) + a),
        "freeze": lambda *a, **kw: calls.append(("freeze",) + a),
        "require": lambda *a, **kw: calls.append(("require",) + a),
    }
    with open(os.path.join(here, "manifest.py")) as f:
        exec(compile(f.read(), "manifest.py", "exec"), env)
    assert ("include", "$(PORT_DIR)/boards/manifest.py") in calls
    pkg = [c for c in calls if c[0] == "package"]
    assert pkg == [("package", "sipling", os.path.join(ROOT, "firmware"))]
    assert os.path.isfile(os.path.join(pkg[0][2], "sipling", "__init__.py"))


def test_package_json_lists_every_firmware_file():
    """firmware/package.json (mip) must name every file of the app; regenerate it with
    `python -m sipling_host.mipgen` after adding or removing a firmware file."""
    path = os.path.join(ROOT, "firmware", "package.json")
    with open(path) as f:
        pkg = json.load(f)
    fw = os.path.join(ROOT, "firmware")
    on_disk = set(image.app_files(fw))
    listed = [dest for dest, _url in pkg["urls"]]
    missing = sorted(on_disk - set(listed))
    extra = sorted(set(listed) - on_disk)
    assert not missing and not extra, \
        "package.json is stale (missing %s, extra %s): run python -m sipling_host.mipgen" % (missing, extra)
    assert len(listed) == len(set(listed))
    for dest, url in pkg["urls"]:
        assert dest == url and os.path.isfile(os.path.join(fw, url))      # relative to package.json
    assert any(d.startswith("sipling/sip/") for d in listed) and "sipling/__init__.py" in listed
    with open(path) as f:
        assert f.read() == mipgen.render(fw)


def test_mipgen_finds_new_files(tmp_path):
    (tmp_path / "sipling" / "sub").mkdir(parents=True)
    (tmp_path / "sipling" / "__init__.py").write_text("")
    (tmp_path / "sipling" / "sub" / "x.py").write_text("X = 1\n")
    (tmp_path / "sipling" / "sub" / "data.bin").write_bytes(b"\0")
    (tmp_path / "sipling" / "__pycache__").mkdir()
    (tmp_path / "sipling" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"")
    (tmp_path / "main.py").write_text("import sipling\n")
    assert mipgen.main(["--check", str(tmp_path)]) == 1            # no package.json yet
    assert mipgen.main([str(tmp_path)]) == 0
    assert mipgen.main(["--check", str(tmp_path)]) == 0
    pkg = json.loads((tmp_path / "package.json").read_text())
    assert [u[0] for u in pkg["urls"]] == ["main.py", "sipling/__init__.py", "sipling/sub/data.bin", "sipling/sub/x.py"]
    (tmp_path / "sipling" / "new.py").write_text("")
    assert mipgen.main(["--check", str(tmp_path)]) == 1


# A board as the ESP32 port sets it up: littlefs2 mounted at "/" and cwd "/" (the unix port
# mounts its host filesystem there; this stub swaps in a file-backed VfsLfs2 first).
LFS_ROOT_STUB = '''
import vfs, os, sys
class Bdev:
    def __init__(s, p, n):
        s.f = open(p, "r+b")
        s.n = n
    def readblocks(s, n, buf, off=0):
        s.f.seek(n * 4096 + off)
        s.f.readinto(buf)
    def writeblocks(s, n, buf, off=0):
        s.f.seek(n * 4096 + off)
        s.f.write(buf)
        s.f.flush()
    def ioctl(s, op, arg):
        if op == 4:
            return s.n
        if op == 5:
            return 4096
        return 0
_bd = Bdev(%r, %d)
vfs.umount("/")
vfs.mount(vfs.VfsLfs2(_bd), "/")
os.chdir("/")
sys.path[:] = ["", ".frozen", "/lib"]
'''


def test_mip_install_from_local_package_json(tmp_path):
    """`mpremote mip install --target / package.json` onto littlefs at "/" puts main.py and
    sipling/ where `sipling image` puts them, and the package imports from there."""
    import subprocess
    import sys
    from sipling_host.ptyboard import PtyBoard
    from peers import micropython
    mp = micropython()
    fw = tmp_path / "fw"
    (fw / "sipling" / "sub").mkdir(parents=True)
    (fw / "main.py").write_text("import sipling\n")
    (fw / "sipling" / "__init__.py").write_text("V = 1\n")
    (fw / "sipling" / "sub" / "__init__.py").write_text("")
    (fw / "sipling" / "sub" / "calc.py").write_text("def add(a, b):\n    return a + b\n")
    mipgen.main([str(fw)])
    board = boards.load_board("esp32-c3")
    img, _used = image.build_vfs([], board)
    (tmp_path / "vfs.bin").write_bytes(img)
    (tmp_path / "stub.py").write_text(LFS_ROOT_STUB % (str(tmp_path / "vfs.bin"), board["vfs_blocks"]))
    with PtyBoard(str(tmp_path / "stub.py"), cwd=str(tmp_path / "cwd"), link=str(tmp_path / "b.tty"),
                  micropath=[".frozen"], micropython=mp) as b:
        b.wait_output(b">>>", timeout=10)
        mp = [sys.executable, "-m", "mpremote", "connect", b.path, "resume"]
        r = subprocess.run(mp + ["mip", "install", "--target", "/", str(fw / "package.json")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and "Done" in r.stdout, r.stdout + r.stderr
        r = subprocess.run(mp + ["exec", "import sipling.sub.calc as c; print(c.__file__, c.add(2, 3))"],
                           capture_output=True, text=True, timeout=60)
        assert r.stdout.split() == ["sipling/sub/calc.py", "5"], r.stdout + r.stderr
    got = image.read_vfs((tmp_path / "vfs.bin").read_bytes(), board)
    assert sorted(got) == ["/main.py", "/sipling/__init__.py", "/sipling/sub/__init__.py", "/sipling/sub/calc.py"]
    assert got["/sipling/sub/calc.py"] == (fw / "sipling" / "sub" / "calc.py").read_bytes()


def test_list_boards_command(capsys):
    assert boards.main() == 0
    out = capsys.readouterr().out.splitlines()
    assert [l.split()[0] for l in out] == boards.list_boards()
    line = [l for l in out if l.startswith("esp32-s3 ")][0]
    assert "esp32s3" in line and "8MB" in line and "1536 blocks" in line
