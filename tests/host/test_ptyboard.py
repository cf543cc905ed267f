"""The simulated board: MicroPython unix port behind a pty that mpremote and pyserial open."""
import os
import shutil
import subprocess
import sys
import time

import pytest

from sipling_host.ptyboard import PtyBoard
from sipling_host.serialport import open_port
from provhelp import board, boot_fp


def _mpremote():
    exe = os.path.join(os.path.dirname(sys.executable), "mpremote")
    if os.path.exists(exe):
        return [exe]
    if shutil.which("mpremote"):
        return ["mpremote"]
    pytest.skip("mpremote not installed (pip install mpremote)")


def test_mpremote_copies_a_file_onto_the_running_app(tmp_path):
    src = tmp_path / "blink.py"
    src.write_text("VALUE = 6 * 7\nprint('blink loaded', VALUE)\n")
    with board("--beat", "50") as b:
        boot_fp(b, 0)
        r = subprocess.run(_mpremote() + ["connect", b.path, "resume", "fs", "cp", str(src), ":blink.py",
                                          "+", "exec", "import blink"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "blink loaded 42" in r.stdout
        with open(os.path.join(b.cwd, "blink.py")) as f:
            assert f.read() == src.read_text()
        # mpremote's ^C stopped the app (KeyboardInterrupt) and left the REPL usable
        assert b"KeyboardInterrupt" in b.output
        assert b"raw REPL; CTRL-B to exit" in b.output
        assert b.alive()


def test_ctrl_c_byte_interrupts_like_a_uart(tmp_path):
    with board() as b:
        boot_fp(b, 0)
        ser = open_port(b.path, timeout=0.05)
        ser.write(b"\x03")
        got = b""
        end = time.monotonic() + 5
        while b">>> " not in got and time.monotonic() < end:
            got += ser.read(256)
        assert b"KeyboardInterrupt" in got and b">>> " in got
        ser.write(b"print(sum(range(10)))\r")
        end = time.monotonic() + 5
        while b"45\n>>> " not in got and time.monotonic() < end:
            got += ser.read(256)
        ser.close()
        assert b"\r\n45\n" in got    # the unix port ends output lines in \n (ESP32: \r\n)


def test_unplug_replug_same_path_and_restart_keeps_files(tmp_path):
    script = tmp_path / "app.py"
    script.write_text("import sys\nopen('marker', 'w').write('x')\nprint('booted')\n"
                      "while True:\n    l = sys.stdin.readline()\n    print('echo', l.strip())\n")
    with PtyBoard(str(script), interactive=False) as b:
        b.wait_output(b"booted")
        b.unplug()
        assert not os.path.exists(b.path)
        b.replug()
        assert os.path.exists(b.path)
        ser = open_port(b.path, timeout=0.05)
        ser.write(b"hello\n")
        got = b""
        end = time.monotonic() + 5
        while b"echo hello" not in got and time.monotonic() < end:
            got += ser.read(256)
        ser.close()
        assert b"echo hello" in got
        mark = len(b.output)
        b.restart()                     # power cut and boot: same files, same port path
        b.wait_output(b"booted", start=mark)
        assert os.path.exists(os.path.join(b.cwd, "marker"))
        assert os.path.realpath(b.path).startswith("/dev/pts/")


def test_fast_start_only_for_this_environments_wheel_script(tmp_path):
    from sipling_host.ptyboard import fast_argv
    from peers import micropython
    other = tmp_path / "micropython"
    other.write_text("#!/opt/elsewhere/bin/python3\nfrom micropython_unix import main\nmain()\n")
    assert fast_argv([str(other), "a.py"]) == [str(other), "a.py"]      # another env: untouched
    assert fast_argv(["/bin/sh", "-c", "true"]) == ["/bin/sh", "-c", "true"]
    mp = micropython()
    fast = fast_argv([mp, "-i", "a.py"])
    if fast[0] != mp:                        # the PyPI wheel in this venv: run without site
        assert fast[:3] == [sys.executable, "-I", "-S"] and fast[-3:] == ["micropython", "-i", "a.py"]
        r = subprocess.run(fast[:-2] + ["-c", "print(6*7)"], capture_output=True, text=True, timeout=30)
        assert r.stdout == "42\n"
