# The console demux (sipling.shell.console): typed lines to the app, frames to the
# provisioner, replies written, frame bytes never echoed (both interpreters).
import hashlib
import os
import struct

from sipling import log
from sipling.provision import frame
from sipling.provision.device import Provisioner
from sipling.provision.store import Store
from sipling.shell import console
from sipling.shell import fs as realfs

import tmpdirs


class Out:
    def __init__(self):
        self.parts = []

    def write(self, b):
        assert isinstance(b, bytes)
        self.parts.append(b)
        return len(b)

    def data(self):
        return b"".join(self.parts)


def test_lines_go_to_the_app_and_replies_come_back():
    seen = []

    def on_line(line):
        seen.append(line)
        if line == "boom":
            raise ValueError("bad arg")
        return None if line == "quiet" else "ok " + line

    out = Out()
    con = console.Console(on_line, None, inp=object(), out=out)
    con.feed(b"status\r\nquiet\rrel")
    con.feed(b"ay on\n\nboom\n")
    assert seen == ["status", "quiet", "relay on", "boom"]
    assert out.data() == b"ok status\nok relay on\nerror: bad arg\n"


def test_a_line_that_is_not_text_gets_an_error_reply():
    seen = []
    out = Out()
    con = console.Console(lambda line: seen.append(line) or "ok", None, inp=object(), out=out)
    con.feed(b"st\xffatus\nstatus\n")
    assert seen == ["status"]
    assert out.data() == b"error console lines are text\nok\n"


def test_frames_go_to_the_provisioner_and_are_not_echoed():
    d = tmpdirs.make("sipling-fw-con")
    st = Store(realfs, d + "/sipling.json")
    prov = Provisioner(st, fw="t")
    lines = []
    out = Out()
    con = console.Console(lines.append, prov.handle_frame, inp=object(), out=out, echo=True)
    secret = b'{"ipsec": {"ik": "00112233445566778899aabbccddeeff"}}'
    sha = hashlib.sha256(secret).digest()
    stream = (b"stat" + frame.encode(frame.BEGIN, 1, struct.pack(">I", len(secret)) + sha + b"config")
              + frame.encode(frame.CHUNK, 2, struct.pack(">I", 0) + secret)
              + frame.encode(frame.COMMIT, 3, sha) + b"hi\r")
    for i in range(0, len(stream), 5):        # bytes arrive in small pieces
        con.feed(stream[i:i + 5])
    assert lines == ["hi"]                      # the half-typed "stat" was dropped by the marker
    data = out.data()
    assert b"00112233" not in data and b"ipsec" not in data
    replies = [frame.decode(x.split(frame.MARKER)[1]) for x in data.split(b"\n") if frame.MARKER in x]
    assert [(r[1], r[2]) for r in replies] == [(frame.OK, 1), (frame.OK, 2), (frame.OK, 3)]
    # echo shows what was typed, nothing of the frames
    echoed = []
    rest = data
    while frame.MARKER in rest:
        i = rest.find(frame.MARKER)
        echoed.append(rest[:i])
        rest = rest[rest.find(b"\n", i) + 1:]
    assert b"".join(echoed) + rest == b"stathi\r\n"
    assert st.read() == secret
    tmpdirs.remove(d)


def test_write_takes_str_and_bytes_and_serves_as_log_sink():
    out = Out()
    con = console.Console(None, None, inp=object(), out=out)
    log.set_sink(con.write)
    log.set_clock(lambda: 5)
    log.info("app", "password=hunter2 up")
    log.set_sink(None)
    log.set_clock(None)
    con.write(b"raw\n")
    assert out.data() == b"5 INFO app: password=*** up\nraw\n"


def test_config_path_default():
    p = console.config_path()
    g = getattr(os, "getenv", None)
    if g and g("SIPLING_CONFIG"):
        assert p == g("SIPLING_CONFIG")
    else:
        assert p in ("sipling.json", "/sipling.json")


def test_app_console_recovers_at_boot_and_builds_the_provisioner_on_the_first_frame():
    d = tmpdirs.make("sipling-fw-con-lazy")
    path = d + "/sipling.json"
    f = realfs.open(path + ".new", "wb")      # a transfer cut by a power loss
    f.write(b'{"half a tr')
    f.close()
    con = console.app_console(lambda line: "ok", None, path=path)
    con.out = Out()
    assert con.boot_note == "dropped unfinished %s.new" % path
    assert not realfs.exists(path + ".new")
    assert con.provisioner is None            # no provisioning code loaded until a frame comes
    assert con.store.path == path
    con.feed(frame.encode(frame.HELLO, 7))
    assert con.provisioner is not None
    r = frame.decode(con.out.data().split(frame.MARKER)[1].split(b"\n")[0])
    assert (r[1], r[2]) == (frame.OK, 7)
    tmpdirs.remove(d)
