"""Provisioning cut at random byte offsets against the firmware on the MicroPython unix port.

A power cut (the device process killed) or a pulled cable (the pty closed) at any byte of a
provisioning session must leave the board booting with either the old or the new complete
config. Run against the real firmware (firmware/main.py, as `sipling sim --pty` runs it) and
against the console/store stub (tests/host/board_stub_main.py, asyncio console path).
"""
import argparse
import hashlib
import json
import os
import random
import time

import pytest

from sipling.provision import frame
from sipling_host import provision
from sipling_host.paths import ROOT, firmware_dir
from sipling_host.ptyboard import PtyBoard

FIRMWARE = firmware_dir()
from sipling_host.serialport import open_port
from peers import micropython
from provhelp import board, boot_fp, fp16, board_file

_FPRINT_LINE = len(frame.encode(frame.FPRINT, 1))


class Cut(Exception):
    pass


class CutSerial:
    """A pyserial port that stops after `budget` written bytes and calls on_cut()."""

    def __init__(self, ser, budget, on_cut):
        self.ser = ser
        self.budget = budget
        self.on_cut = on_cut
        self.written = 0

    def write(self, data):
        if self.budget is not None and self.written + len(data) > self.budget:
            part = data[:self.budget - self.written]
            self.ser.write(part)
            self.ser.flush()
            self.written += len(part)
            self.on_cut()
            raise Cut()
        self.written += len(data)
        return self.ser.write(data)

    def __getattr__(self, name):
        return getattr(self.ser, name)


def _session(ser, data):
    link = provision.Link(ser, timeout=0.5, retries=6)
    provision.hello(link)
    sha = provision.push(link, data)
    assert provision.fingerprints(link)["config"] == sha.hex()
    return link


def _total_bytes(b, data):
    """Bytes the host writes in a whole session for `data` (measured on the board)."""
    ser = open_port(b.path, timeout=0.02)
    counter = CutSerial(ser, None, None)
    _session(counter, data)
    ser.close()
    return counter.written


# --- the two boards --------------------------------------------------------------------

class Firmware:
    """firmware/main.py with a config at SIPLING_CONFIG; the app runs and answers frames."""

    def __init__(self, tmp_path):
        self.cfg = tmp_path / "sipling.json"
        env = dict(os.environ, MICROPYPATH=FIRMWARE + ":.frozen", SIPLING_CONFIG=str(self.cfg),
                   SIPLING_BOARD=os.path.join(ROOT, "boards", "sim", "board.json"))
        self.board = PtyBoard(argv=[micropython(), os.path.join(FIRMWARE, "main.py")], env=env,
                              cwd=str(tmp_path / "fs"), link=str(tmp_path / "board.tty"))

    def configs(self):
        ap = argparse.ArgumentParser()
        provision.add_arguments(ap)
        out = []
        for owner in ("sip:alice@example.test", "sip:bob@example.test"):
            a = ap.parse_args(["--port", "x", "--aor", "sip:door@example.test", "--proxy", "127.0.0.1:35070",
                               "--owner", owner, "--port-c", "35072", "--port-s", "35074",
                               "--mechanisms", "ipsec-man,digest", "--allow-digest", "--log-level", "warn"])
            out.append(provision.config_bytes(provision.build(a)[0]))
        return out

    def start(self, first):
        self.cfg.write_bytes(first)
        self.board.start()

    def on_flash(self):
        return self.cfg.read_bytes() if self.cfg.exists() else None

    def leftover(self):
        return os.path.exists(str(self.cfg) + ".new")

    def booted_fp(self, start):
        # the app is up again when it answers on its console; it reports what it loaded
        ser = open_port(self.board.path, timeout=0.02)
        try:
            link = provision.Link(ser, timeout=0.5, retries=10)
            return provision.fingerprints(link)["config"]
        finally:
            ser.close()


class Stub:
    def __init__(self, tmp_path):
        self.board = board("--asyncio")

    def configs(self):
        def cfg(tag, n):
            return json.dumps({"version": 1, "tag": tag, "identity": {"password": tag * 8},
                               "pad": list(range(n))}).encode()
        return [cfg("aaaa", 120), cfg("bbbb", 160)]

    def start(self, first):
        self.board.start()
        boot_fp(self.board, 0)
        ser = open_port(self.board.path, timeout=0.02)
        _session(ser, first)
        ser.close()

    def on_flash(self):
        return board_file(self.board)

    def leftover(self):
        return board_file(self.board, "sipling.json.new") is not None

    def booted_fp(self, start):
        got = boot_fp(self.board, start)
        return got          # a 16-hex prefix; compared by prefix below


@pytest.mark.parametrize("kind,cuts", [(Firmware, 50), (Stub, 20)])
def test_power_cut_at_random_bytes_boots_old_or_new(tmp_path, kind, cuts):
    rng = random.Random(0x5EED ^ int(time.time()))
    dev = kind(tmp_path)
    a, bcfg = dev.configs()
    b = dev.board
    try:
        dev.start(a)
        totals = {bcfg: _total_bytes(b, bcfg), a: _total_bytes(b, a)}
        assert dev.on_flash() == a
        have = a
        outcomes = set()
        for i in range(cuts):
            other = bcfg if have == a else a
            total = totals[other]
            if i % 10 == 4:
                # inside the last line (FPRINT): the COMMIT went out whole and was answered,
                # so the board must come up with `other`
                cut = rng.randrange(total - _FPRINT_LINE, total)
                delay = 0.02
            else:
                cut = rng.randrange(total)
                delay = rng.choice((0, 0.002, 0.01))
            ser = open_port(b.path, timeout=0.02)

            def power_cut():
                time.sleep(delay)
                b.kill()
            with pytest.raises(Cut):
                _session(CutSerial(ser, cut, power_cut), other)
            ser.close()
            start = len(b.output)
            b.restart()
            booted = dev.booted_fp(start)
            on_flash = dev.on_flash()
            assert on_flash in (have, other), "cut at byte %d of %d left a broken config" % (cut, total)
            assert hashlib.sha256(on_flash).hexdigest().startswith(booted), (cut, booted)
            assert not dev.leftover()                      # boot recovery dropped the temp file
            outcomes.add(on_flash == other)
            if i % 10 == 4:
                assert on_flash == other, cut
            have = on_flash
        assert outcomes == {True, False}
    finally:
        b.stop()


@pytest.mark.parametrize("kind", [Firmware, Stub])
def test_link_dropped_at_random_bytes_then_reprovisioned(tmp_path, kind):
    rng = random.Random(0xD40B ^ int(time.time()))
    dev = kind(tmp_path)
    a, bcfg = dev.configs()
    b = dev.board
    try:
        dev.start(a)
        totals = {bcfg: _total_bytes(b, bcfg), a: _total_bytes(b, a)}
        have = dev.on_flash()
        for i in range(10):
            other = bcfg if have == a else a
            cut = rng.randrange(totals[other])
            ser = open_port(b.path, timeout=0.02)
            with pytest.raises(Cut):
                _session(CutSerial(ser, cut, b.unplug), other)
            ser.close()
            b.replug()
            ser = open_port(b.path, timeout=0.02)
            link = provision.Link(ser, timeout=0.5, retries=6)
            now = provision.fingerprints(link)["config"]
            assert now in (hashlib.sha256(have).hexdigest(), hashlib.sha256(other).hexdigest()), cut
            _session(ser, other)                  # the same boot takes a full session
            ser.close()
            assert dev.on_flash() == other
            have = other
        assert b.alive()
    finally:
        b.stop()
