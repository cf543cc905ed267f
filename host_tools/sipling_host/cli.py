"""The `sipling` command: one table of sub-commands, one error type (esptool/mpremote manner).

Each sub-command lives in its own module exposing ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args)``. A user's mistake raises :class:`sipling_host.errors.UserError`, which
prints ``sipling: <what went wrong and what to do>`` and exits 1, never a traceback.
"""
import argparse
import importlib
import sys

from .errors import UserError

# name -> module (imported only when that command runs, so `sipling --help` stays fast)
COMMANDS = {
    "image": "sipling_host.image",
    "flash": "sipling_host.flash",
    "provision": "sipling_host.provision",
    "logs": "sipling_host.logs",
    "sim": "sipling_host.sim",
    "edge": "sipling_host.edge",
    "proxy-user": "sipling_host.proxy_users",
}


def _load(name):
    try:
        return importlib.import_module(COMMANDS[name])
    except ModuleNotFoundError as e:
        if e.name == COMMANDS[name]:
            return None
        raise


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error style: one `sipling: ...` line, exit 1. Values that
    follow an unknown option are not repeated (they may be a password typed by mistake)."""

    def error(self, message):
        prefix = "unrecognized arguments: "
        if message.startswith(prefix):
            opts = [a for a in message[len(prefix):].split() if a.startswith("-")]
            message = "unknown option%s %s" % ("s" if len(opts) > 1 else "", " ".join(opts) or "(a stray value)")
        print("sipling: %s; see `%s --help`" % (message, self.prog), file=sys.stderr)
        sys.exit(1)


def build_parser():
    p = _Parser(prog="sipling", description="sipling host tools")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        mod = _load(name)
        if mod is None:
            continue
        sp = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(sp)
        sp.set_defaults(_run=mod.run)
    return p


def main(argv=None):
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        prog = "sipling" + (" " + args.command if getattr(args, "command", None) else "")
        _Parser(prog=prog).error("unrecognized arguments: " + " ".join(extra))
    if not getattr(args, "_run", None):
        parser.print_help()
        return 1
    try:
        rc = args._run(args)
    except UserError as e:
        print("sipling: %s" % e, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("sipling: interrupted", file=sys.stderr)
        return 130
    return rc or 0


if __name__ == "__main__":
    sys.exit(main())
