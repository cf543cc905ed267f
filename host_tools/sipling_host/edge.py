"""`sipling edge`: the proxy-side security edge in front of a home SIP proxy (docs/edge.md)."""
import argparse

from .errors import UserError

HELP = "run the security edge (sec-agree + ESP for devices) in front of a SIP proxy"


def _hostport(text, default_port):
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, str(default_port)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise UserError("--proxy %s: expected HOST:PORT, e.g. 127.0.0.1:5070" % text)
    return host, int(port)


def add_arguments(p):
    p.add_argument("--bundles", required=True, metavar="DIR",
                   help="directory of per-device bundles (*.json, written by `sipling provision`); "
                        "changes are picked up within a second and on SIGHUP")
    p.add_argument("--host", default="127.0.0.1", help="address the edge binds (default 127.0.0.1)")
    p.add_argument("--sip-port", type=int, default=5060,
                   help="UDP port devices send their first REGISTER to (default 5060)")
    p.add_argument("--encap-port", type=int, default=4500,
                   help="ESP-in-UDP port, RFC 3948 (default 4500)")
    p.add_argument("--proxy", default="127.0.0.1:5070", metavar="HOST:PORT",
                   help="the home proxy (Kamailio, Asterisk...) to relay to (default 127.0.0.1:5070)")
    p.add_argument("--inner-port", type=int, default=5059,
                   help="UDP port the edge uses toward the proxy; it appears in Via and Path (default 5059)")
    p.add_argument("--port-c", type=int, default=5066, help="edge port-c in Security-Server (default 5066)")
    p.add_argument("--port-s", type=int, default=5068, help="edge port-s in Security-Server (default 5068)")
    p.add_argument("--challenge", choices=("494", "401"), default="494",
                   help="answer the first REGISTER with 494, or 401 + Digest challenge as IMS proxies do")
    p.add_argument("--realm", default="sipling", help="Digest realm for --challenge 401")
    p.add_argument("--state-dir", metavar="DIR",
                   help="where ipsec-man sequence numbers and replay-window tops persist across "
                        "restarts (default: BUNDLES/.state)")
    p.add_argument("--raw", action="store_true", help="also terminate raw ESP (IP protocol 50; root only)")
    p.add_argument("--trust-pai", action=argparse.BooleanOptionalAction, default=True,
                   help="pass the proxy's P-Asserted-Identity to devices, the identity their owner check "
                        "believes (default on; --no-trust-pai if your proxy does not authenticate users "
                        "and assert them: then no command is obeyed)")
    p.add_argument("--log-level", choices=("debug", "info", "warn", "error"), default="info")


def config_from_args(args):
    from .edge_core import EdgeConfig
    return EdgeConfig(host=args.host, sip_port=args.sip_port, encap_port=args.encap_port,
                      inner_port=args.inner_port, proxy=_hostport(args.proxy, 5060),
                      port_pc=args.port_c, port_ps=args.port_s, challenge=args.challenge,
                      realm=args.realm, trust_pai=args.trust_pai)


def run(args):
    import os
    import sys
    from .edge_shell import EdgeShell, Logger, run_forever
    if not os.path.isdir(args.bundles):
        raise UserError("--bundles %s: no such directory; create it and put the device bundles "
                        "from `sipling provision` in it" % args.bundles)
    state = args.state_dir or os.path.join(args.bundles, ".state")
    try:
        os.makedirs(state, mode=0o700, exist_ok=True)
        if not os.access(state, os.W_OK):
            raise PermissionError(state)
    except OSError:
        if args.state_dir:
            raise UserError("--state-dir %s is not writable; choose a directory the edge may write" % state)
        print("sipling: warning: %s is not writable: ipsec-man sequence numbers will restart with the edge "
              "and devices will refuse them; pass --state-dir" % state, file=sys.stderr)
        state = None
    args.state_dir = state
    shell = EdgeShell(config_from_args(args), args.bundles, args.state_dir, args.raw,
                      Logger(level=args.log_level))
    run_forever(shell)
    return 0
