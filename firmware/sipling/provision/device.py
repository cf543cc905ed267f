# Device side of the provisioning protocol (sans-IO): frame lines in, reply lines out,
# content into a Store. The console (sipling.shell.console) hands each frame line to
# handle_frame(); feed() does the console's demux itself for callers without one.
#
#   HELLO                        -> OK {"proto","fw","chunk","max","fp":{"config":hex|None}}
#   BEGIN size sha256 name       -> OK 0            (temp file truncated; old content stays)
#   CHUNK offset data            -> OK received     (duplicates acknowledged, not rewritten)
#                                   ERR E_OFFSET expected  (a gap: the host resends from there)
#   COMMIT sha256                -> OK sha256       (checked, read back, renamed atomically)
#   FPRINT                       -> OK {"config": sha256 hex | None}
#   ABORT                        -> OK              (temp file removed)
#   BYE                          -> OK              (sets .bye: the REPL server returns)
# Fingerprints are SHA-256 digests of whole files; key bytes never leave the device.
import binascii
import json
import struct
from micropython import const

from sipling import log
from sipling.provision import frame
from sipling.provision.store import StoreError

_IDLE = const(0)
_RECEIVING = const(1)
MAX_SIZE = const(16384)
_MOD = "provision"


def _hex(b):
    return None if b is None else binascii.hexlify(b).decode()


class Provisioner:
    """Provisioner(store, on_commit=None, fw="", name="config").

    on_commit(name) is called after a new file replaced the old one (the app reloads its
    config there: key rotation while running).
    """

    def __init__(self, store, on_commit=None, fw="", name="config"):
        self.store = store
        self.on_commit = on_commit
        self.fw = fw
        self.name = name
        self.state = _IDLE
        self.size = 0
        self.expect = None
        self._split = frame.Splitter()
        self.commits = 0
        self.bye = False

    def feed(self, data):
        """Console bytes in (text lines ignored) -> reply bytes to write back."""
        out = []
        for kind, body in self._split.feed(data):
            if kind == "frame":
                r = self.handle_frame(body)
                if r:
                    out.append(r)
        return b"".join(out)

    def handle_frame(self, body):
        """One frame line body (after the marker) -> one reply line (bytes) or None."""
        try:
            ver, ftype, seq, payload = frame.decode(body)
        except frame.FrameError as e:
            log.debug(_MOD, "bad frame: %s" % e)
            return frame.encode(frame.ERR, 0, frame.err_payload(frame.E_FRAME, str(e)))
        if ver != frame.VERSION:
            return frame.encode(frame.ERR, seq, bytes([frame.E_VERSION, frame.VERSION]))
        fn = _HANDLERS.get(ftype)
        if fn is None:
            return self._err(seq, frame.E_TYPE, "type %d" % ftype)
        try:
            code, reply = fn(self, payload)
        except (OSError, StoreError) as e:
            log.error(_MOD, "store: %s" % e)
            self._reset()
            return self._err(seq, frame.E_STORE, str(e))
        except (ValueError, IndexError) as e:
            # remote garbage that got past the checks above: refuse it, keep running
            log.warn(_MOD, "bad %s request: %s" % (frame.NAMES.get(ftype, "?"), e))
            return self._err(seq, frame.E_FRAME, "bad request")
        if code:
            return frame.encode(frame.ERR, seq, reply)
        return frame.encode(frame.OK, seq, reply)

    def _err(self, seq, code, text=""):
        return frame.encode(frame.ERR, seq, frame.err_payload(code, text))

    def _reset(self):
        self.state = _IDLE
        self.expect = None
        try:
            self.store.abort()
        except Exception:
            pass

    def _fps(self):
        return {self.name: _hex(self.store.fingerprint())}

    def _hello(self, payload):
        info = {"proto": frame.VERSION, "fw": self.fw, "chunk": frame.CHUNK_SIZE,
                "max": MAX_SIZE, "fp": self._fps()}
        return 0, json.dumps(info).encode()

    def _begin(self, payload):
        if len(payload) < 36:
            return frame.E_FRAME, frame.err_payload(frame.E_FRAME, "begin")
        size = struct.unpack_from(">I", payload, 0)[0]
        name = bytes(payload[36:])
        if name != self.name.encode():
            return frame.E_NAME, frame.err_payload(frame.E_NAME, "unknown file")
        if size > MAX_SIZE:
            return frame.E_SIZE, frame.err_payload(frame.E_SIZE, "max %d" % MAX_SIZE)
        self.store.begin()
        self.state = _RECEIVING
        self.size = size
        self.expect = bytes(payload[4:36])
        log.info(_MOD, "receiving %s (%d bytes)" % (self.name, size))
        return 0, struct.pack(">I", 0)

    def _chunk(self, payload):
        if self.state != _RECEIVING:
            return frame.E_STATE, frame.err_payload(frame.E_STATE, "no transfer")
        if len(payload) < 4:
            return frame.E_FRAME, frame.err_payload(frame.E_FRAME, "chunk")
        off = struct.unpack_from(">I", payload, 0)[0]
        data = payload[4:]
        have = self.store.size
        if off > have:
            return frame.E_OFFSET, bytes([frame.E_OFFSET]) + struct.pack(">I", have)
        skip = have - off
        if skip < len(data):
            if have + len(data) - skip > self.size:
                return frame.E_SIZE, frame.err_payload(frame.E_SIZE, "past end")
            self.store.write(data[skip:])
        return 0, struct.pack(">I", self.store.size)

    def _commit(self, payload):
        want = bytes(payload[:32])
        if self.state != _RECEIVING:
            # a repeated COMMIT whose first reply was lost: already done
            if len(want) == 32 and self.store.fingerprint() == want:
                return 0, want
            return frame.E_STATE, frame.err_payload(frame.E_STATE, "no transfer")
        if self.store.size != self.size:
            return frame.E_SIZE, frame.err_payload(frame.E_SIZE, "have %d of %d" % (self.store.size, self.size))
        if want != self.expect:
            self._reset()
            return frame.E_DIGEST, frame.err_payload(frame.E_DIGEST, "begin/commit differ")
        try:
            got = self.store.commit(want)
        except StoreError as e:
            self._reset()
            return frame.E_DIGEST, frame.err_payload(frame.E_DIGEST, str(e))
        self.state = _IDLE
        self.commits += 1
        log.info(_MOD, "committed %s sha256 %s..." % (self.name, _hex(got)[:16]))
        if self.on_commit is not None:
            try:
                self.on_commit(self.name)
            except Exception as e:
                log.exc(_MOD, "on_commit", e)
        return 0, got

    def _fprint(self, payload):
        return 0, json.dumps(self._fps()).encode()

    def _abort(self, payload):
        if self.state == _RECEIVING:
            log.info(_MOD, "transfer aborted")
        self._reset()
        return 0, b""


def _bye(self, payload):
    self._reset()
    self.bye = True
    return 0, b""


_HANDLERS = {
    frame.BYE: _bye,
    frame.HELLO: Provisioner._hello,
    frame.BEGIN: Provisioner._begin,
    frame.CHUNK: Provisioner._chunk,
    frame.COMMIT: Provisioner._commit,
    frame.FPRINT: Provisioner._fprint,
    frame.ABORT: Provisioner._abort,
}
