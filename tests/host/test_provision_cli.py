"""`sipling provision` end to end: the firmware's console, provisioner and store on the
MicroPython unix port behind a pty, the host tool through pyserial on that pty."""
import hashlib
import json
import os
import stat
import time

import pytest

from sipling.provision import frame
from sipling_host import cli, provision
from sipling_host.errors import UserError
from sipling_host.serialport import open_port, _classify
from provhelp import board, boot_fp, board_file, HEX32


def _provision(port, bundles, *extra):
    return cli.main(["provision", "--port", port, "--aor", "sip:door@example.test",
                     "--proxy", "127.0.0.1:5060", "--owner", "sip:alice@example.test",
                     "--out-bundle", str(bundles)] + list(extra))


def _console(port, line, want):
    ser = open_port(port, timeout=0.05)
    ser.write(line.encode() + b"\r")
    got = b""
    end = time.monotonic() + 3
    while want.encode() not in got and time.monotonic() < end:
        got += ser.read(256)
    ser.close()
    return got.decode()


def _secrets(bundle):
    s = [bundle["device"]["password"], bundle["ipsec"]["ik"], bundle["ipsec"]["ck"],
         bundle["ipsec_man"]["ik"], bundle["ipsec_man"]["ck"]]
    assert all(len(x) >= 16 for x in s)
    return s


@pytest.fixture(scope="module")
def stub():
    with board() as b:
        boot_fp(b, 0)
        yield b


def test_fresh_board_then_key_rotation_while_running(stub, tmp_path, capfd):
    b = stub
    bundles = tmp_path / "bundles"
    assert _provision(b.path, bundles) == 0
    out1, err1 = capfd.readouterr()
    assert err1 == ""
    assert "config none (fresh board)" in out1
    cfg1 = board_file(b)
    sha1 = hashlib.sha256(cfg1).hexdigest()
    assert "board confirms sha256 %s" % sha1 in out1
    path = bundles / "door@example.test.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    bun1 = json.loads(path.read_text())
    conf = json.loads(cfg1)
    # the two sides hold the same secrets and SA set
    assert conf["identity"]["password"] == bun1["device"]["password"]
    assert conf["ipsec"] == bun1["ipsec"] and conf["ipsec_man"] == bun1["ipsec_man"]
    assert bun1["config_sha256"] == sha1
    assert conf["owners"] == ["sip:alice@example.test"]
    assert conf["proxy"] == {"host": "127.0.0.1", "port": 5060, "domain": "example.test"}
    # issue 10: secure by default, no digest unless asked for, commands only under IPsec
    assert conf["secagree"] == {"mechanisms": ["ipsec-3gpp", "ipsec-man"], "require_ipsec": True}
    assert conf["control"] == {"digest_commands": False, "trust_from": False}
    m = conf["ipsec_man"]
    assert len({m["spi_uc"], m["spi_us"], m["spi_pc"], m["spi_ps"]}) == 4
    assert all(256 <= m[k] < 2 ** 32 for k in ("spi_uc", "spi_us", "spi_pc", "spi_ps"))
    assert _console(b.path, "status", "reloads") .startswith("ok config %s reloads 1" % sha1[:16])

    # key rotation: the app keeps running, takes the new config, all secrets fresh
    mark = len(b.output)
    assert _provision(b.path, bundles, "--mechanisms", "ipsec-man,digest", "--allow-digest") == 0
    out2, _ = capfd.readouterr()
    assert "config sha256 %s..." % sha1[:16] in out2
    bun2 = json.loads(path.read_text())
    cfg2 = board_file(b)
    assert bun2["config_sha256"] == hashlib.sha256(cfg2).hexdigest() != sha1
    assert not set(_secrets(bun1)) & set(_secrets(bun2))
    assert b"app: reloaded config (2)" in b.output[mark:]
    assert b.alive()

    # no key in what the host printed nor in anything the board wrote
    for s in _secrets(bun1) + _secrets(bun2):
        assert s not in out1 + out2
        assert s.encode() not in b.output
    # the board's frame replies carry fingerprints, never config bytes
    for line in bytes(b.output).split(b"\n"):
        if frame.MARKER in line:
            _, t, _, pl = frame.decode(line.split(frame.MARKER)[1])
            assert t in (frame.OK, frame.ERR)
            assert b"password" not in pl
            for sec in _secrets(bun1) + _secrets(bun2):
                assert sec.encode() not in pl
                if HEX32.fullmatch(sec):
                    assert bytes.fromhex(sec) not in pl


def test_log_redacts_keys_on_the_console(stub):
    got = _console(stub.path, "secret", "done")
    assert "app: ik=*** password=***" in got
    assert "hunter2" not in got and "00112233445566778899aabbccddeeff" not in got


def test_missing_port_one_line(tmp_path, capfd):
    rc = _provision(str(tmp_path / "ttyUSB9"), tmp_path)
    _, err = capfd.readouterr()
    assert rc == 1
    assert err == "sipling: port %s not found; is the board plugged in? " \
                  "(list ports: python -m serial.tools.list_ports)\n" % (tmp_path / "ttyUSB9")


def test_busy_port_one_line(stub, tmp_path, capfd):
    holder = open_port(stub.path)
    try:
        rc = _provision(stub.path, tmp_path)
    finally:
        holder.close()
    _, err = capfd.readouterr()
    assert rc == 1
    assert err.startswith("sipling: port %s is busy; close the other program" % stub.path)
    assert err.count("\n") == 1


def test_permission_denied_names_dialout():
    e = _classify("/dev/ttyUSB0", PermissionError(13, "Permission denied"))
    assert isinstance(e, UserError)
    assert "add yourself to the dialout group" in str(e)


def test_fresh_board_at_the_repl_is_provisioned_through_raw_repl(tmp_path, capfd):
    from sipling_host.ptyboard import PtyBoard
    script = tmp_path / "nothing.py"
    script.write_text("print('no app here')\n")       # MicroPython + firmware, no app running
    with PtyBoard(str(script)) as b:
        b.wait_output(b">>> ")
        rc = _provision(b.path, tmp_path, "--timeout", "0.2")
        out, err = capfd.readouterr()
        assert (rc, err) == (0, "")
        assert "board: no app answering; provisioning through the MicroPython REPL" in out
        assert "config none (fresh board)" in out
        cfg = board_file(b)
        bundle = json.loads((tmp_path / "door@example.test.json").read_text())
        assert bundle["config_sha256"] == hashlib.sha256(cfg).hexdigest()
        # back at the friendly REPL afterwards, still alive, and no key echoed by the REPL
        b.wait_output(b">>> ", start=b.output.rfind(b"\x04>"))   # ^B reached the board
        mark = len(b.output)
        b.send(b"print(6*7)\r")
        b.wait_output(b"42\n", start=mark)
        for sec in _secrets(bundle):
            assert sec.encode() not in b.output


def test_stock_micropython_without_firmware_one_line(tmp_path, capfd):
    from sipling_host.ptyboard import PtyBoard
    script = tmp_path / "nothing.py"
    script.write_text("print('stock micropython')\n")
    with PtyBoard(str(script), micropath=[".frozen"]) as b:
        b.wait_output(b">>> ")
        rc = _provision(b.path, tmp_path, "--timeout", "0.1")
        _, err = capfd.readouterr()
        assert rc == 1
        assert err == ("sipling: the board on %s has MicroPython but no sipling firmware; "
                       "run `sipling flash` first\n" % b.path)
        assert not (tmp_path / "door@example.test.json").exists()


def test_no_repl_fallback_when_told(tmp_path, capfd):
    from sipling_host.ptyboard import PtyBoard
    script = tmp_path / "nothing.py"
    script.write_text("print('no app')\n")
    with PtyBoard(str(script)) as b:
        b.wait_output(b">>> ")
        rc = _provision(b.path, tmp_path, "--timeout", "0.1", "--no-repl")
        _, err = capfd.readouterr()
        assert rc == 1
        assert err.startswith("sipling: no answer from the sipling firmware on %s" % b.path)
        assert board_file(b) is None


def test_bad_options_one_line_each(tmp_path, capfd):
    base = ["provision", "--port", "loop://", "--out-bundle", str(tmp_path)]
    assert cli.main(base + ["--aor", "door", "--proxy", "x", "--owner", "sip:o@x"]) == 1
    assert cli.main(base + ["--aor", "sip:a@b", "--proxy", "x", "--owner", "sip:o@x",
                            "--mechanisms", "rot13"]) == 1
    assert cli.main(base + ["--aor", "sip:a@b", "--proxy", "x"]) == 1
    _, err = capfd.readouterr()
    assert err.splitlines() == [
        "sipling: --aor must look like sip:user@domain (got 'door')",
        "sipling: unknown mechanism 'rot13'; choose from ipsec-3gpp, ipsec-man, digest",
        "sipling: give at least one --owner sip:you@domain (who may control the board)"]


def test_config_the_firmware_would_refuse_is_not_sent(tmp_path, capfd):
    # the firmware's own validator (sipling.config) runs before anything goes out
    rc = cli.main(["provision", "--port", str(tmp_path / "never-opened"), "--aor", "sip:a@b.test",
                   "--proxy", "127.0.0.1", "--owner", "sip:o@b.test", "--port-c", "6000",
                   "--port-s", "6000", "--out-bundle", str(tmp_path)])
    _, err = capfd.readouterr()
    assert rc == 1
    assert err.splitlines() == [
        "sipling: config: local.port_s: must differ from local.port_c (RFC 3329 Appendix A uses two ports)",
        "sipling: the board would refuse this config (1 problem above); fix the options"]


def test_digest_needs_explicit_flags(tmp_path, capfd):
    # issue 10 finding 1: digest only with --allow-digest; commands under it only with
    # --digest-commands as well; each mistake is one line, nothing is sent
    base = ["provision", "--port", str(tmp_path / "nosuch"), "--aor", "sip:door@example.test",
            "--proxy", "127.0.0.1", "--owner", "sip:alice@example.test", "--out-bundle", str(tmp_path / "b")]
    assert cli.main(base + ["--mechanisms", "ipsec-3gpp,digest"]) == 1
    assert "add --allow-digest if you mean it" in capfd.readouterr().err
    assert cli.main(base + ["--digest-commands"]) == 1
    assert "--digest-commands needs --allow-digest" in capfd.readouterr().err
    args = cli.build_parser().parse_args(base + ["--allow-digest", "--digest-commands"])
    cfg, bundle = provision.build(args)
    assert cfg["secagree"] == {"mechanisms": ["ipsec-3gpp", "ipsec-man", "digest"], "require_ipsec": False}
    assert cfg["control"]["digest_commands"] is True and bundle["require_ipsec"] is False
    provision.check(cfg)
