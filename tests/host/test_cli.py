# The `sipling` command's own error style: one `sipling: ...` line, exit 1, no traceback,
# and a value typed after an unknown option is never repeated (it may be a password).
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _sipling(*args):
    return subprocess.run([sys.executable, "-m", "sipling_host", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)


def test_unknown_option_names_the_option_not_its_value():
    r = _sipling("provision", "--port", "/dev/null", "--aor", "sip:a@b", "--proxy", "1.2.3.4",
                 "--wifi-pass", "hunter2-secret")
    assert r.returncode == 1
    assert r.stderr == "sipling: unknown option --wifi-pass; see `sipling provision --help`\n"
    assert "hunter2" not in r.stdout + r.stderr


def test_missing_required_option_is_one_line_exit_1():
    r = _sipling("flash")
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("sipling: ") and "--board" in lines[0]
    assert "Traceback" not in r.stderr


def test_no_command_prints_help_and_fails():
    r = _sipling()
    assert r.returncode == 1 and "image" in r.stdout and "provision" in r.stdout
