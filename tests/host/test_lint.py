# The firmware import lint must catch what the ESP32 port lacks and I/O outside the shell.
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
LINT = os.path.join(os.path.dirname(HERE), "lint_firmware.py")


def _lint(tmp_path, rel, source):
    p = tmp_path / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(source)
    return subprocess.run([sys.executable, LINT, str(tmp_path)], capture_output=True, text=True)


def test_real_firmware_is_clean():
    r = subprocess.run([sys.executable, LINT, os.path.join(os.path.dirname(os.path.dirname(HERE)), "firmware")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout


def test_refuses_module_missing_on_esp32(tmp_path):
    r = _lint(tmp_path, "sipling/sip/x.py", "import hmac\n")
    assert r.returncode == 1 and "imports hmac" in r.stdout


def test_refuses_socket_in_a_core(tmp_path):
    r = _lint(tmp_path, "sipling/esp/x.py", "import socket\n")
    assert r.returncode == 1 and "outside the shell" in r.stdout


def test_allows_socket_in_the_shell(tmp_path):
    r = _lint(tmp_path, "sipling/shell/x.py", "import socket\nimport struct\n")
    assert r.returncode == 0, r.stdout


def test_refuses_cpython_only_attribute(tmp_path):
    r = _lint(tmp_path, "sipling/shell/x.py", "import time\nt = time.monotonic()\n")
    assert r.returncode == 1 and "time.monotonic is CPython-only" in r.stdout
