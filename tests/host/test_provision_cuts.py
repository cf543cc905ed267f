"""Provisioning cut at random byte offsets against the firmware on the MicroPython unix port.

A power cut (the device process killed) or a pulled cable at any byte of a provisioning
session must leave the board booting with either the old or the new complete config.
"""
import json
import random
import time

import pytest

from sipling.provision import frame
from sipling_host import provision
from sipling_host.serialport import open_port
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


def _cfg(tag, n):
    return json.dumps({"version": 1, "tag": tag, "identity": {"password": tag * 8},
                       "pad": list(range(n))}).encode()


def _session(ser, data):
    link = provision.Link(ser, timeout=0.5, retries=3)
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


def test_power_cut_at_random_bytes_boots_old_or_new():
    rng = random.Random(0x5EED ^ int(time.time()))
    a, bcfg = _cfg("aaaa", 120), _cfg("bbbb", 160)
    with board() as b:
        assert boot_fp(b, 0) == "none"
        totals = {bcfg: _total_bytes(b, bcfg), a: _total_bytes(b, a)}
        assert board_file(b) == a                # the board now holds a
        have = a
        cuts = 0
        outcomes = set()
        for i in range(50):
            other = bcfg if have == a else a
            total = totals[other]
            if i % 10 == 4:
                # inside the last line (FPRINT): the COMMIT went out whole, the board
                # has time to act on it before the cut, and must come up with `other`
                cut = rng.randrange(total - _FPRINT_LINE, total)
                delay = 0.05
            else:
                cut = rng.randrange(total)
                delay = rng.choice((0, 0.002, 0.01))
            ser = open_port(b.path, timeout=0.02)
            start = len(b.output)

            def power_cut():
                time.sleep(delay)
                b.kill()
            with pytest.raises(Cut):
                _session(CutSerial(ser, cut, power_cut), other)
            ser.close()
            b.restart()
            booted = boot_fp(b, start)
            on_flash = board_file(b)
            assert on_flash in (have, other), "cut at byte %d left a broken config" % cut
            assert booted == fp16(on_flash), (cut, booted)
            assert board_file(b, "sipling.json.new") is None    # recover() dropped it
            outcomes.add(on_flash == other)
            if i % 10 == 4:
                assert on_flash == other, cut
            have = on_flash
            cuts += 1
            if i % 10 == 9:                       # a full session after a cut works
                ser = open_port(b.path, timeout=0.02)
                _session(ser, other if have == a else a)
                ser.close()
                have = board_file(b)
        assert cuts == 50
        # the cuts spread over the session: some before, some after the commit
        assert outcomes == {True, False}


def test_link_dropped_at_random_bytes_then_reprovisioned():
    rng = random.Random(0xD40B ^ int(time.time()))
    a, bcfg = _cfg("aaaa", 100), _cfg("bbbb", 140)
    with board() as b:
        boot_fp(b, 0)
        totals = {bcfg: _total_bytes(b, bcfg), a: _total_bytes(b, a)}
        have = a
        for i in range(12):
            other = bcfg if have == a else a
            total = totals[other]
            cut = rng.randrange(total)
            ser = open_port(b.path, timeout=0.02)
            with pytest.raises(Cut):
                _session(CutSerial(ser, cut, b.unplug), other)
            ser.close()
            b.replug()
            ser = open_port(b.path, timeout=0.02)
            ser.reset_input_buffer()
            link = provision.Link(ser, timeout=0.5, retries=3)
            now = provision.fingerprints(link)["config"]
            assert now in (provision.hashlib.sha256(have).hexdigest(),
                           provision.hashlib.sha256(other).hexdigest()), cut
            _session(ser, other)                  # the same boot takes a full session
            ser.close()
            assert board_file(b) == other
            have = other
        assert b.alive()
