# Remote-control commands carried in a SIP MESSAGE body (RFC 3428).
#   text/plain:        status | get <sensor> | set <actuator> on|off | help
#   application/json:  {"cmd": "set", "name": "relay", "value": "on"} or {"cmd": "set relay on"}
# The board is duck-typed: board.caps {name: {"kind": ...}}, board.read(name), board.write(name, on).
# Replies: text "ok ..." / "error ...", or JSON {"ok": true|false, ...} when the request was JSON.
import json

MAX_BODY = 256  # a command is a short line; longer bodies are refused, not parsed

CT_TEXT = b"text/plain"
CT_JSON = b"application/json"


def _fmt(v):
    if v is True:
        return "on"
    if v is False:
        return "off"
    if isinstance(v, float):
        return "%.1f" % v
    return str(v)


def _names(board, kinds):
    return [n for n in sorted(board.caps) if board.caps[n].get("kind") in kinds]


def parse_text(text):
    """(verb, args) from a text command; words split on blanks, verb lower-cased."""
    words = text.strip().split()
    if not words:
        return "", []
    return words[0].lower(), words[1:]


def parse_json(body):
    """(verb, args) from a JSON command, or raise ValueError with the reason."""
    try:
        obj = json.loads(body)
    except ValueError:
        raise ValueError("body is not valid JSON")
    if not isinstance(obj, dict):
        raise ValueError("JSON command must be an object")
    cmd = obj.get("cmd", obj.get("command"))
    if not isinstance(cmd, str):
        raise ValueError("JSON command needs \"cmd\"")
    verb, args = parse_text(cmd)
    for k in ("name", "value"):
        v = obj.get(k)
        if isinstance(v, bool):
            v = "on" if v else "off"
        if v is not None:
            args.append(str(v))
    return verb, args


def run(board, verb, args, status_extra=None):
    """(ok, fields): fields is a list of (key, value-string) pairs, or [("error", why)]."""
    caps = board.caps
    if verb == "status" and not args:
        fields = [(n, _fmt(board.read(n))) for n in sorted(caps)]
        if status_extra:
            fields.extend(status_extra())
        return True, fields
    if verb == "help" and not args:
        return True, [("commands", "status | get <sensor> | set <actuator> on|off | help"),
                      ("sensors", ",".join(_names(board, ("sensor", "button"))) or "-"),
                      ("actuators", ",".join(_names(board, ("actuator",))) or "-")]
    if verb == "get" and len(args) == 1:
        name = args[0].lower()
        if name not in caps:
            return False, [("error", "no sensor or actuator named '%s'; try help" % args[0])]
        return True, [(name, _fmt(board.read(name)))]
    if verb == "set" and len(args) == 2:
        name, val = args[0].lower(), args[1].lower()
        cap = caps.get(name)
        if cap is None or cap.get("kind") != "actuator":
            return False, [("error", "no actuator named '%s'; actuators: %s"
                            % (args[0], ",".join(_names(board, ("actuator",))) or "-"))]
        if val not in ("on", "off"):
            return False, [("error", "value must be on or off, got '%s'" % args[1])]
        board.write(name, val == "on")
        return True, [(name, _fmt(board.read(name)))]
    if verb in ("status", "help", "get", "set"):
        return False, [("error", "wrong arguments for %s; try help" % verb)]
    return False, [("error", "unknown command '%s'; try help" % verb[:32])]


def execute(board, body, content_type=b"text/plain", status_extra=None):
    """(reply_body, reply_content_type, summary) for a MESSAGE body. Never raises on input."""
    is_json = content_type is not None and content_type.split(b";")[0].strip().lower() == CT_JSON
    if len(body) > MAX_BODY:
        ok, fields = False, [("error", "command longer than %d bytes" % MAX_BODY)]
        verb = "?"
    else:
        try:
            text = body.decode()
        except UnicodeError:
            text = None
        if text is None:
            ok, fields, verb = False, [("error", "body is not UTF-8 text")], "?"
        else:
            try:
                verb, args = parse_json(text) if is_json else parse_text(text)
                ok, fields = run(board, verb, args, status_extra)
            except ValueError as e:
                ok, fields, verb = False, [("error", e.args[0])], "?"
    if is_json:
        obj = {"ok": ok}
        for k, v in fields:
            obj[k] = v
        out = json.dumps(obj).encode()
        ct = CT_JSON
    else:
        parts = ["ok" if ok else "error"]
        for k, v in fields:
            parts.append(v if k == "error" else "%s=%s" % (k, v))
        out = " ".join(parts).encode()
        ct = CT_TEXT
    return out, ct, "%s %s" % (verb or "(empty)", "ok" if ok else "refused")
