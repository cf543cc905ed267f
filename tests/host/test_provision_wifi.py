"""`sipling provision` and the board's Wi-Fi credentials: --wifi-ssid, the password from a
file, $SIPLING_WIFI_PASSWORD or a no-echo prompt; never on the command line, never printed;
required for a real board, optional for the simulated one."""
import argparse
import json

import pytest

from sipling import config as devcfg
from sipling_host import cli, provision
from sipling_host.errors import UserError
from provhelp import board, boot_fp, board_file

PASSWORD = "correct horse battery"


def _args(*extra):
    ap = argparse.ArgumentParser()
    provision.add_arguments(ap)
    return ap.parse_args(["--port", "x", "--aor", "sip:door@example.test", "--proxy", "192.168.1.2",
                          "--owner", "sip:alice@example.test"] + list(extra))


def _no_prompt(prompt):
    raise AssertionError("asked for a password: %s" % prompt)


def test_password_file_env_and_prompt(tmp_path):
    f = tmp_path / "wifi.txt"
    f.write_text(PASSWORD + "\n")
    a = _args("--board", "esp32-generic", "--wifi-ssid", "home", "--wifi-password-file", str(f))
    # the file wins over the environment and is read without its trailing newline
    assert provision.wifi_settings(a, environ={"SIPLING_WIFI_PASSWORD": "other password"}, tty=True,
                                   ask=_no_prompt) == {"ssid": "home", "password": PASSWORD}
    a = _args("--board", "esp32-generic", "--wifi-ssid", "home")
    assert provision.wifi_settings(a, environ={"SIPLING_WIFI_PASSWORD": PASSWORD}, tty=True,
                                   ask=_no_prompt)["password"] == PASSWORD
    asked = []
    got = provision.wifi_settings(a, environ={}, tty=True, ask=lambda p: asked.append(p) or PASSWORD)
    assert got == {"ssid": "home", "password": PASSWORD}
    assert asked == ["Wi-Fi password for home (empty for an open network): "]
    # an open network: an empty password
    assert provision.wifi_settings(a, environ={"SIPLING_WIFI_PASSWORD": ""}, tty=False)["password"] == ""


def test_real_board_needs_wifi_sim_does_not():
    with pytest.raises(UserError) as e:
        provision.wifi_settings(_args("--board", "esp32-s3"), environ={}, tty=True, ask=_no_prompt)
    assert str(e.value) == ("board esp32-s3 joins Wi-Fi: give --wifi-ssid NAME and the password in "
                            "--wifi-password-file FILE or $SIPLING_WIFI_PASSWORD")
    with pytest.raises(UserError) as e:
        provision.wifi_settings(_args("--board", "esp32-s3", "--wifi-ssid", "home"), environ={}, tty=False)
    assert str(e.value).startswith("no Wi-Fi password for home: put it in a file")
    assert provision.wifi_settings(_args(), environ={}, tty=True, ask=_no_prompt) is None
    # the simulated board takes them if given (unused there), without asking when not a tty
    assert provision.wifi_settings(_args("--wifi-ssid", "home"), environ={}, tty=False) == \
        {"ssid": "home", "password": ""}


def test_bad_password_length_is_refused_without_showing_it(tmp_path):
    f = tmp_path / "wifi.txt"
    f.write_text("short7!")
    a = _args("--board", "esp32-c3", "--wifi-ssid", "home", "--wifi-password-file", str(f))
    with pytest.raises(UserError) as e:
        provision.wifi_settings(a, environ={}, tty=False)
    assert str(e.value) == "the Wi-Fi password for home has 7 characters; WPA2 wants 8 to 63 (or 64 hex digits)"
    with pytest.raises(UserError) as e:
        provision.wifi_settings(_args("--board", "esp32-c3", "--wifi-ssid", "x" * 33), environ={}, tty=False)
    assert str(e.value) == "--wifi-ssid must be 1 to 32 bytes long (got 33)"
    with pytest.raises(UserError) as e:
        provision.wifi_settings(_args("--board", "esp32-c3", "--wifi-ssid", "home", "--wifi-password-file",
                                      str(tmp_path / "missing")), environ={}, tty=False)
    assert str(e.value).startswith("--wifi-password-file %s: No such file" % (tmp_path / "missing"))


def test_password_on_the_command_line_is_refused_unechoed(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["provision", "--port", "x", "--aor", "sip:d@e.test", "--proxy", "1.2.3.4",
                  "--owner", "sip:o@e.test", "--board", "esp32-generic", "--wifi-ssid", "home",
                  "--wifi-password", PASSWORD])
    assert e.value.code == 1
    out, err = capsys.readouterr()
    assert "ends up in shell history" in err
    assert PASSWORD not in out + err
    # nor taken as an abbreviation of --wifi-password-file (argparse would accept a prefix)
    with pytest.raises(SystemExit) as e:
        cli.main(["provision", "--port", "x", "--aor", "sip:d@e.test", "--proxy", "1.2.3.4",
                  "--owner", "sip:o@e.test", "--wifi-pass", PASSWORD])
    assert e.value.code == 1
    err = capsys.readouterr().err
    assert "unknown option --wifi-pass;" in err and PASSWORD not in err


def test_real_board_without_wifi_is_one_line_before_the_port_is_opened(tmp_path, capfd, monkeypatch):
    monkeypatch.delenv("SIPLING_WIFI_PASSWORD", raising=False)
    rc = cli.main(["provision", "--port", str(tmp_path / "never-opened"), "--aor", "sip:d@e.test",
                   "--proxy", "192.168.1.2", "--owner", "sip:o@e.test", "--board", "esp32-generic",
                   "--out-bundle", str(tmp_path / "b")])
    out, err = capfd.readouterr()
    assert rc == 1 and out == ""
    assert err.splitlines() == ["sipling: board esp32-generic joins Wi-Fi: give --wifi-ssid NAME and the "
                                "password in --wifi-password-file FILE or $SIPLING_WIFI_PASSWORD"]
    assert not (tmp_path / "b").exists()


def test_wifi_reaches_the_board_config_not_the_bundle_nor_the_output(tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("SIPLING_WIFI_PASSWORD", PASSWORD)
    with board() as b:
        boot_fp(b, 0)
        rc = cli.main(["provision", "--port", b.path, "--aor", "sip:door@example.test",
                       "--proxy", "192.168.1.2", "--owner", "sip:alice@example.test",
                       "--board", "esp32-generic", "--local", "192.168.1.50", "--wifi-ssid", "home net",
                       "--out-bundle", str(tmp_path / "bundles")])
        out, err = capfd.readouterr()
        assert rc == 0, err
        raw = board_file(b)
        output = bytes(b.output)
    cfg, problems = devcfg.loads(raw)         # the firmware's own validator takes it
    assert problems == []
    assert cfg["wifi"] == {"ssid": "home net", "password": PASSWORD}
    assert cfg["board"] == "esp32-generic"
    bundle = (tmp_path / "bundles" / "door@example.test.json").read_text()
    assert "wifi" not in json.loads(bundle) and PASSWORD not in bundle
    assert PASSWORD not in out + err
    assert PASSWORD.encode() not in output    # the board's console never shows it either
