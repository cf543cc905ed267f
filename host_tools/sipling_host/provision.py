"""`sipling provision`: fresh keys and config onto a board, the proxy-side bundle beside.

The host end of the provisioning protocol (frame codec in ``sipling.provision.frame``,
shared with the device): HELLO, BEGIN, CHUNK... (each acknowledged, CRC-checked, resent on
a NAK or a timeout), COMMIT with the SHA-256 (the device renames atomically), FPRINT read
back and compared. Keys are generated here with ``os.urandom`` and never printed; the
bundle for ``sipling edge`` is written only after the board confirmed the fingerprint,
mode 0600, one file per device.
"""
import argparse
import base64
import hashlib
import json
import os
import struct
import sys
import time

from sipling.provision import frame

from .errors import UserError
from .serialport import open_port

HELP = "create fresh keys and config, write them to the board, write the proxy-side bundle"
MECHANISMS = ("ipsec-3gpp", "ipsec-man", "digest")
DEFAULT_MECHANISMS = ("ipsec-3gpp", "ipsec-man")   # secure by default: digest needs --allow-digest
_ERRNAMES = {frame.E_FRAME: "bad frame", frame.E_VERSION: "protocol version",
             frame.E_TYPE: "unknown request", frame.E_STATE: "no transfer in progress",
             frame.E_OFFSET: "offset", frame.E_SIZE: "size", frame.E_DIGEST: "digest mismatch",
             frame.E_STORE: "flash write failed", frame.E_NAME: "unknown file"}


class DeviceError(Exception):
    """The board answered ERR: .code (frame.E_*), .payload (bytes after the code)."""

    def __init__(self, code, payload):
        self.code = code
        self.payload = payload
        super().__init__("%s (%s)" % (_ERRNAMES.get(code, "error %d" % code),
                                      payload.decode("utf-8", "replace")))


class LinkTimeout(Exception):
    pass


class Link:
    """Request/reply over the console: one frame out, the reply with the same seq back.

    Text lines the board prints meanwhile (its log) go to on_text(line) if given; they are
    never mixed into replies. A timeout or an E_FRAME reply resends the same request.
    """

    def __init__(self, ser, timeout=1.0, retries=5, on_text=None):
        self.ser = ser
        self.timeout = timeout
        self.retries = retries
        self.on_text = on_text
        self.split = frame.Splitter(max_line=1 << 16)
        self.seq = 1 + (os.urandom(1)[0] % 250)
        self.resends = 0
        self._pending = []

    def prime(self, data):
        """Bytes already read from the port by someone else (they are parsed first)."""
        self._pending.extend(self.split.feed(data))

    def _next_seq(self):
        self.seq = self.seq % 255 + 1   # 1..255; 0 marks "request unreadable"
        return self.seq

    def _read_items(self, deadline):
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            data = self.ser.read(max(1, self.ser.in_waiting or 1))
            if data:
                self._pending.extend(self.split.feed(data))
        return self._pending.pop(0)

    def request(self, ftype, payload=b""):
        """Send one request; the OK payload, DeviceError on ERR, LinkTimeout after retries."""
        seq = self._next_seq()
        line = frame.encode(ftype, seq, payload)
        for attempt in range(self.retries + 1):
            if attempt:
                self.resends += 1
            self.ser.write(line)
            self.ser.flush()
            deadline = time.monotonic() + self.timeout
            while True:
                item = self._read_items(deadline)
                if item is None:
                    break                                   # timeout: resend
                kind, body = item
                if kind == "text":
                    if self.on_text:
                        self.on_text(body.decode("utf-8", "replace"))
                    continue
                try:
                    _, rtype, rseq, rpl = frame.decode(body)
                except frame.FrameError:
                    break                                   # reply damaged: resend
                if rtype == frame.ERR and rseq == 0 and rpl[:1] == bytes([frame.E_FRAME]):
                    break                                   # request damaged: resend
                if rseq != seq:
                    continue                                # a stale reply
                if rtype == frame.OK:
                    return rpl
                if rtype == frame.ERR:
                    raise DeviceError(rpl[0] if rpl else 0, rpl[1:])
        raise LinkTimeout(frame.NAMES.get(ftype, str(ftype)))


def hello(link):
    return json.loads(link.request(frame.HELLO).decode())


def fingerprints(link):
    """{name: sha256 hex or None} as the board reports them."""
    return json.loads(link.request(frame.FPRINT).decode())


def push(link, data, name="config", chunk=frame.CHUNK_SIZE, progress=None):
    """Write `data` as file `name` and commit it; returns the SHA-256 the board confirmed."""
    sha = hashlib.sha256(data).digest()
    link.request(frame.BEGIN, struct.pack(">I", len(data)) + sha + name.encode())
    off = 0
    while off < len(data):
        part = data[off:off + chunk]
        try:
            got = struct.unpack(">I", link.request(frame.CHUNK, struct.pack(">I", off) + part))[0]
        except DeviceError as e:
            if e.code != frame.E_OFFSET or len(e.payload) != 4:
                raise
            got = struct.unpack(">I", e.payload)[0]   # the board lacks bytes from here
        off = got
        if progress:
            progress(off, len(data))
    got = link.request(frame.COMMIT, sha)
    if got != sha:
        raise DeviceError(frame.E_DIGEST, b"board committed different content")
    return sha


# --- a board at the REPL (no app running) ----------------------------------------------

RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"


def _read_until(ser, needle, timeout):
    """(found, bytes read after the needle)."""
    got = b""
    end = time.monotonic() + timeout
    while needle not in got and time.monotonic() < end:
        got += ser.read(max(1, ser.in_waiting))
    i = got.find(needle)
    return i >= 0, (got[i + len(needle):] if i >= 0 else b"")


def start_repl_server(ser, path=None, timeout=2.0):
    """Interrupt what runs (^C), enter the raw REPL (^A) and run the firmware's
    ``serve_provisioning(path)`` (as mpremote does). (taken, bytes after the REPL's OK)."""
    ser.write(b"\r\x03\x03")
    ser.flush()
    time.sleep(0.1)
    ser.reset_input_buffer()
    ser.write(b"\r\x01")
    if not _read_until(ser, RAW_PROMPT, timeout)[0]:
        return False, b""
    code = "import sipling.shell.console as c\nc.serve_provisioning(%r)\n" % (path,)
    ser.write(code.encode() + b"\x04")
    return _read_until(ser, b"OK", timeout)


def end_repl_server(link, timeout=2.0):
    """BYE to the REPL server, then back to the friendly REPL (^B)."""
    try:
        link.request(frame.BYE)
    except (LinkTimeout, DeviceError):
        pass
    if b"\x04>" not in link.split.pending():        # the end of the exec may be read already
        _read_until(link.ser, b"\x04>", timeout)
    link.ser.write(b"\x02")
    link.ser.flush()


# --- keys, config and bundle -----------------------------------------------------------

def _spis(n):
    """n distinct random SPIs in 256..2^32-1 (1..255 are reserved, RFC 4303 section 2.1)."""
    out = []
    while len(out) < n:
        v = struct.unpack(">I", os.urandom(4))[0]
        if v >= 256 and v not in out:
            out.append(v)
    return out


def _hex(n):
    return os.urandom(n).hex()


def _hostport(text, default_port):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        return text, default_port
    return host, int(port)


def aor_parts(aor):
    if not aor.startswith(("sip:", "sips:")) or "@" not in aor:
        raise UserError("--aor must look like sip:user@domain (got %r)" % aor)
    user, _, domain = aor.split(":", 1)[1].partition("@")
    domain = domain.split(";")[0].split(">")[0]
    if not user or not domain:
        raise UserError("--aor must look like sip:user@domain (got %r)" % aor)
    return user, domain


def build(args, wifi=None):
    """(config dict for the board, bundle dict for the proxy side), all secrets fresh.

    wifi: {"ssid", "password"} for the board's config (never in the bundle), or None."""
    user, domain = aor_parts(args.aor)
    phost, pport = _hostport(args.proxy, 5060)
    mechs = [m.strip() for m in args.mechanisms.split(",") if m.strip()]
    for m in mechs:
        if m not in MECHANISMS + ("tls",):
            raise UserError("unknown mechanism %r; choose from %s" % (m, ", ".join(MECHANISMS)))
    if not mechs:
        raise UserError("--mechanisms is empty; give at least one of %s" % ", ".join(MECHANISMS))
    if "digest" in mechs and not args.allow_digest:
        raise UserError("--mechanisms lists digest, which protects only the board's own requests (a LAN "
                        "attacker could then send it commands); add --allow-digest if you mean it")
    if args.allow_digest and "digest" not in mechs:
        mechs.append("digest")
    if args.digest_commands and not args.allow_digest:
        raise UserError("--digest-commands needs --allow-digest (commands under a digest-only agreement)")
    if not any(m in ("ipsec-3gpp", "ipsec-man") for m in mechs) and not args.allow_digest:
        raise UserError("--mechanisms has no ipsec-3gpp or ipsec-man; IPsec is required unless --allow-digest")
    port_c, port_s = args.port_c, args.port_s
    spi_uc, spi_us, spi_pc, spi_ps = _spis(4)
    password = base64.urlsafe_b64encode(os.urandom(18)).decode()
    ipsec = {"carrier": args.carrier, "encap_port": args.encap_port,
             "peer_encap_port": args.peer_encap_port or args.encap_port, "ik": _hex(16), "ck": _hex(16),
             "algs": [["hmac-sha-1-96", "aes-cbc"], ["hmac-sha-1-96", "null"]]}
    man = {"alg": "hmac-sha-1-96", "ealg": "aes-cbc", "ik": _hex(16), "ck": _hex(16),
           "spi_uc": spi_uc, "spi_us": spi_us, "spi_pc": spi_pc, "spi_ps": spi_ps,
           "port_uc": port_c, "port_us": port_s,
           "port_pc": args.proxy_port_c, "port_ps": args.proxy_port_s}
    cfg = {
        "version": 1,
        "board": args.board,
        "identity": {"aor": args.aor, "auth_user": user, "password": password,
                     "display": args.display or user},
        "proxy": {"host": phost, "port": pport, "domain": args.domain or domain},
        "local": {"host": args.local, "port_c": port_c, "port_s": port_s},
        "secagree": {"mechanisms": mechs, "require_ipsec": not args.allow_digest},
        "ipsec": ipsec,
        "ipsec_man": man,
        "owners": list(args.owner or []),
        "control": {"digest_commands": bool(args.digest_commands), "trust_from": False},
        "register": {"expires": args.expires, "keepalive": args.keepalive},
        "log": {"level": args.log_level, "trace_sip": bool(args.trace_sip)},
    }
    if wifi is not None:
        cfg["wifi"] = {"ssid": wifi["ssid"], "password": wifi["password"]}
    bundle = {
        "version": 1,
        "device": {"aor": args.aor, "auth_user": user, "password": password,
                   "domain": cfg["proxy"]["domain"], "host": args.local,
                   "port_c": port_c, "port_s": port_s},
        "proxy": cfg["proxy"],
        "mechanisms": mechs,
        "require_ipsec": not args.allow_digest,
        "ipsec": ipsec,
        "ipsec_man": man,
        "owners": cfg["owners"],
    }
    return cfg, bundle


def _read_secret_file(path):
    try:
        with open(path, "rb") as f:
            data = f.read(4096)
    except OSError as e:
        raise UserError("--wifi-password-file %s: %s; give a readable file holding only the password"
                        % (path, e.strerror or e)) from None
    try:
        text = data.decode("utf-8")
    except UnicodeError:
        raise UserError("--wifi-password-file %s is not UTF-8 text" % path) from None
    return text.rstrip("\r\n")        # one line; a trailing newline is not part of it


def wifi_settings(args, environ=None, tty=None, ask=None):
    """{"ssid", "password"} for the config, or None (a simulated board without --wifi-ssid).

    The password comes from --wifi-password-file, else $SIPLING_WIFI_PASSWORD, else a prompt
    without echo when stdin is a terminal; never from the command line, never printed.
    A real board (--board other than sim) cannot join a network without them: UserError."""
    environ = os.environ if environ is None else environ
    tty = sys.stdin.isatty() if tty is None else tty
    ssid = args.wifi_ssid
    real = args.board != "sim"
    if ssid is None:
        if real:
            raise UserError("board %s joins Wi-Fi: give --wifi-ssid NAME and the password in "
                            "--wifi-password-file FILE or $SIPLING_WIFI_PASSWORD" % args.board)
        if args.wifi_password_file:
            raise UserError("--wifi-password-file needs --wifi-ssid NAME")
        return None
    if not ssid or len(ssid.encode()) > 32:
        raise UserError("--wifi-ssid must be 1 to 32 bytes long (got %d)" % len(ssid.encode()))
    if args.wifi_password_file:
        pw = _read_secret_file(args.wifi_password_file)
    elif "SIPLING_WIFI_PASSWORD" in environ:
        pw = environ["SIPLING_WIFI_PASSWORD"]
    elif tty:
        if ask is None:
            import getpass
            ask = getpass.getpass
        pw = ask("Wi-Fi password for %s (empty for an open network): " % ssid)
    elif real:
        raise UserError("no Wi-Fi password for %s: put it in a file (--wifi-password-file FILE) or in "
                        "$SIPLING_WIFI_PASSWORD (empty for an open network)" % ssid)
    else:
        pw = ""
    # WPA2-PSK: a passphrase of 8..63 characters or 64 hex digits (IEEE 802.11i H.4)
    n = len(pw)
    if n and not (8 <= n <= 63 or (n == 64 and all(c in "0123456789abcdefABCDEF" for c in pw))):
        raise UserError("the Wi-Fi password for %s has %d characters; WPA2 wants 8 to 63 (or 64 hex digits)"
                        % (ssid, n))
    return {"ssid": ssid, "password": pw}


def check(cfg):
    """Refuse a config the firmware would refuse (its own validator, sipling.config)."""
    from sipling import config as devcfg
    _, problems = devcfg.validate(cfg)
    if problems:
        for p in problems:
            print("sipling: config: %s" % p, file=sys.stderr)
        raise UserError("the board would refuse this config (%d problem%s above); fix the options"
                        % (len(problems), "" if len(problems) == 1 else "s"))


def config_bytes(cfg):
    return json.dumps(cfg, sort_keys=True, separators=(",", ":")).encode()


def write_private(path, text):
    """Write text to path with mode 0600 (temp file + rename: the old file or the new one)."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return path


def write_bundle(directory, bundle):
    """Write <dir>/<user>@<domain>.json with mode 0600 (temp file + rename); its path."""
    os.makedirs(directory, exist_ok=True)
    dev = bundle["device"]
    path = os.path.join(directory, "%s@%s.json" % (dev["auth_user"], dev["domain"]))
    return write_private(path, json.dumps(bundle, indent=2, sort_keys=True) + "\n")


# --- the command -----------------------------------------------------------------------

class _RefusePassword(argparse.Action):
    """--wifi-password VALUE: refused without echoing VALUE (shell history, ps)."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser.error("a password on the command line ends up in shell history and ps; use "
                     "--wifi-password-file FILE or $SIPLING_WIFI_PASSWORD, or let it ask")


def add_arguments(p):
    p.allow_abbrev = False   # no --wifi-password as an abbreviation of --wifi-password-file
    p.add_argument("--port", required=True, help="serial port of the board (/dev/ttyUSB0, a pty path)")
    p.add_argument("--aor", required=True, help="device address of record, sip:door@example.test")
    p.add_argument("--proxy", required=True, help="home proxy host[:port] (default port 5060)")
    p.add_argument("--domain", help="SIP domain (default: the AOR's)")
    p.add_argument("--owner", action="append", help="owner AOR allowed to control the board (at least one; repeat for more)")
    p.add_argument("--mechanisms", default=",".join(DEFAULT_MECHANISMS),
                   help="sec-agree mechanisms, comma separated, from %s (default %%(default)s)" % ", ".join(MECHANISMS))
    p.add_argument("--allow-digest", action="store_true",
                   help="also allow the digest mechanism (weaker: it protects only the board's own requests; "
                        "commands under it are still refused without --digest-commands)")
    p.add_argument("--digest-commands", action="store_true",
                   help="lab only: obey commands under a digest-only agreement (logged at every registration)")
    # IPsec is required by default now; the old switch is accepted so scripts keep working
    p.add_argument("--require-ipsec", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--board", default="sim", help="board name stored in the config (default sim)")
    p.add_argument("--wifi-ssid", metavar="SSID",
                   help="Wi-Fi network the board joins (required for a real board)")
    p.add_argument("--wifi-password-file", metavar="FILE",
                   help="file holding the Wi-Fi password (else $SIPLING_WIFI_PASSWORD, else asked "
                        "without echo); never given on the command line")
    p.add_argument("--wifi-password", action=_RefusePassword, help=argparse.SUPPRESS)
    p.add_argument("--display", help="display name (default: the AOR user)")
    p.add_argument("--local", default="127.0.0.1", help="device address for SIP (default %(default)s)")
    p.add_argument("--port-c", type=int, default=5062, help="device protected client port")
    p.add_argument("--port-s", type=int, default=5064, help="device protected server port")
    p.add_argument("--proxy-port-c", type=int, default=5066, help="proxy port-c for ipsec-man")
    p.add_argument("--proxy-port-s", type=int, default=5068, help="proxy port-s for ipsec-man")
    p.add_argument("--carrier", default="udp-encap", choices=("udp-encap", "raw"),
                   help="how ESP travels (default %(default)s)")
    p.add_argument("--encap-port", type=int, default=4500, help="device's ESP-in-UDP port (default 4500)")
    p.add_argument("--peer-encap-port", type=int, help="edge's ESP-in-UDP port (default: --encap-port)")
    p.add_argument("--expires", type=int, default=600, help="registration expiry in seconds")
    p.add_argument("--keepalive", type=int, default=30, help="keep-alive interval in seconds (0: off)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warn", "error"))
    p.add_argument("--trace-sip", action="store_true", help="board logs SIP traces (for sipling logs --pcap)")
    p.add_argument("--out-bundle", default="sipling-bundles",
                   help="directory for the proxy-side bundle (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    p.add_argument("--no-repl", action="store_true",
                   help="do not fall back to the raw REPL when the app does not answer")
    p.add_argument("--device-path", help="config path on the board for the REPL fallback "
                   "(default: the firmware's, /sipling.json)")
    p.add_argument("--baud", type=int, default=115200)


def run(args):
    if not args.owner:
        raise UserError("give at least one --owner sip:you@domain (who may control the board)")
    cfg, bundle = build(args, wifi_settings(args))
    check(cfg)
    data = config_bytes(cfg)
    ser = open_port(args.port, args.baud, timeout=0.05)
    try:
        ser.reset_input_buffer()
        text = []
        # a running app answers HELLO at once: do not wait long before trying the REPL
        link = Link(ser, timeout=min(args.timeout, 0.5), retries=2, on_text=text.append)
        repl = False
        try:
            try:
                info = hello(link)
            except LinkTimeout:
                if args.no_repl:
                    raise
                # no app answering: a fresh board at the REPL, or an app that refused its config
                print("board: no app answering; provisioning through the MicroPython REPL")
                taken, rest = start_repl_server(ser, args.device_path)
                if not taken:
                    raise
                repl = True
                del text[:]
                link.resends = 0
                link.prime(rest)
                info = hello(link)
        except LinkTimeout:
            if any("ImportError" in t for t in text):
                raise UserError("the board on %s has MicroPython but no sipling firmware; "
                                "run `sipling flash` first" % args.port)
            raise UserError("no answer from the sipling firmware on %s; is it flashed and running? "
                            "(run `sipling flash`, or reset the board)" % args.port)
        except DeviceError as e:
            if e.code == frame.E_VERSION:
                raise UserError("the board speaks provisioning protocol %d, this tool %d; update the "
                                "firmware or the host tools" % (e.payload[0] if e.payload else 0, frame.VERSION))
            raise UserError("the board refused HELLO: %s" % e)
        link.retries = 5
        link.timeout = args.timeout
        old = (info.get("fp") or {}).get("config")
        print("board: firmware %s, provisioning protocol %s, config %s" % (
            info.get("fw") or "?", info.get("proto"), ("sha256 " + old[:16] + "...") if old else "none (fresh board)"))
        if len(data) > info.get("max", len(data)):
            raise UserError("config is %d bytes, the board takes at most %d" % (len(data), info["max"]))
        chunk = min(int(info.get("chunk") or frame.CHUNK_SIZE), frame.CHUNK_SIZE)
        try:
            sha = push(link, data, "config", chunk)
            fps = fingerprints(link)
        except LinkTimeout as e:
            raise UserError("the board stopped answering during %s; the old config is still in place, "
                            "run sipling provision again" % e)
        except DeviceError as e:
            raise UserError("the board refused the config: %s; the old config is still in place" % e)
        if fps.get("config") != sha.hex():
            raise UserError("the board reports config sha256 %s, expected %s; run sipling provision again"
                            % (fps.get("config"), sha.hex()))
        if repl:
            end_repl_server(link)
    finally:
        ser.close()
    bundle["config_sha256"] = sha.hex()
    bundle["created"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    path = write_bundle(args.out_bundle, bundle)
    print("config: %d bytes committed, board confirms sha256 %s" % (len(data), sha.hex()))
    if link.resends:
        print("link: %d request(s) resent" % link.resends)
    print("proxy bundle: %s (mode 0600; give it to sipling edge)" % path)
    if repl:
        print("board: reset it (or press Ctrl-D at its REPL) to start the app with the new config")
    sys.stdout.flush()
    return 0
