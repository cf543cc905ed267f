"""A scripted remote control: a real SIP UA (pjsua2) that registers with the proxy, sends
text MESSAGEs to a device and waits for its reply MESSAGEs (demo and tests).

    python -m sipling_host.edge_remote --proxy 127.0.0.1:5070 --aor sip:alice@example.test \\
        --to sip:door@example.test --send status --send "set relay on"

Prints one JSON object per line: {"event": "registered"}, {"event": "sent", "text", "code"},
{"event": "reply", "from", "text"}; exits 0 when every MESSAGE got a 2xx and a reply.
Runs in its own process: pjsua2 allows one library instance per process.
"""
import argparse
import json
import sys
import time


def _emit(**kv):
    sys.stdout.write(json.dumps(kv) + "\n")
    sys.stdout.flush()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m sipling_host.edge_remote")
    p.add_argument("--proxy", required=True, metavar="HOST:PORT")
    p.add_argument("--aor", default="sip:alice@example.test")
    p.add_argument("--to", required=True)
    p.add_argument("--send", action="append", default=[])
    p.add_argument("--timeout", type=float, default=8.0, help="seconds to wait for each answer")
    p.add_argument("--no-reply", action="store_true", help="only wait for the final response")
    p.add_argument("--password-file", metavar="FILE",
                   help="the account's Digest password (the proxy authenticates its users; "
                        "`sipling proxy-user` writes it)")
    a = p.parse_args(argv)
    try:
        import pjsua2 as pj
    except ImportError:
        _emit(event="error", text="pjsua2 is not installed: .venv/bin/pip install pjsua2-python")
        return 2

    ep = pj.Endpoint()
    ep.libCreate()
    ecfg = pj.EpConfig()
    ecfg.uaConfig.threadCnt = 0
    ecfg.uaConfig.mainThreadOnly = True
    ecfg.uaConfig.userAgent = "sipling-remote (pjsua2)"
    ecfg.logConfig.level = 0
    ecfg.logConfig.consoleLevel = 0
    ep.libInit(ecfg)
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = "127.0.0.1"
    tcfg.publicAddress = "127.0.0.1"
    tcfg.port = 0
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    try:
        ep.audDevManager().setNullDev()
    except Exception:
        pass

    state = {"reg": None, "codes": [], "replies": []}

    class Acc(pj.Account):
        def onRegState(self, prm):
            state["reg"] = prm.code

        def onInstantMessage(self, prm):
            state["replies"].append((prm.fromUri, prm.msgBody))

        def onInstantMessageStatus(self, prm):
            state["codes"].append(prm.code)

    acfg = pj.AccountConfig()
    acfg.idUri = a.aor
    acfg.regConfig.registrarUri = "sip:" + a.proxy
    acfg.regConfig.timeoutSec = 300
    acfg.sipConfig.proxies.append("sip:%s;lr" % a.proxy)
    acfg.natConfig.contactRewriteUse = 0
    acfg.natConfig.viaRewriteUse = 0
    acfg.natConfig.sdpNatRewriteUse = 0
    acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
    acfg.natConfig.mediaStunUse = pj.PJSUA_STUN_USE_DISABLED
    if a.password_file:
        from .provision import aor_parts
        from .proxy_users import password_from_file
        pw, _ = password_from_file(a.password_file, create=False)
        user = aor_parts(a.aor)[0]
        acfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, pw))
    acc = Acc()
    acc.create(acfg)

    def pump(until, secs):
        end = time.monotonic() + secs
        while time.monotonic() < end and not until():
            ep.libHandleEvents(20)
        return until()

    ok = True
    try:
        if not pump(lambda: state["reg"] is not None, a.timeout) or not 200 <= state["reg"] < 300:
            _emit(event="error", text="registration with %s failed (%s)" % (a.proxy, state["reg"]))
            return 1
        _emit(event="registered", aor=a.aor, proxy=a.proxy)
        bud = pj.Buddy()
        bcfg = pj.BuddyConfig()
        bcfg.uri = a.to
        bcfg.subscribe = False
        bud.create(acc, bcfg)
        for text in a.send:
            n_codes, n_replies = len(state["codes"]), len(state["replies"])
            prm = pj.SendInstantMessageParam()
            prm.content = text
            prm.contentType = "text/plain"
            bud.sendInstantMessage(prm)
            pump(lambda: len(state["codes"]) > n_codes, a.timeout)
            code = state["codes"][n_codes] if len(state["codes"]) > n_codes else None
            _emit(event="sent", text=text, code=code)
            if code is None or not 200 <= code < 300:
                ok = False
                continue
            if a.no_reply:
                continue
            if pump(lambda: len(state["replies"]) > n_replies, a.timeout):
                frm, body = state["replies"][n_replies]
                _emit(event="reply", **{"from": frm, "text": body})
            else:
                _emit(event="error", text="no reply to %r within %gs" % (text, a.timeout))
                ok = False
        # de-register so the proxy forgets us
        try:
            acc.setRegistration(False)
            pump(lambda: False, 0.3)
        except Exception:
            pass
    finally:
        try:
            acc.shutdown()
        except Exception:
            pass
        ep.libDestroy()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
