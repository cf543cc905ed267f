"""`sipling proxy-user`: the SIP accounts of the home proxy (Kamailio's auth_db over db_text).

The shipped Kamailio config (tests/interop/kamailio/edge.cfg) authenticates every user with
Digest (RFC 3261 22, RFC 2617) before it relays a request or stores a binding, and asserts
the authenticated identity in P-Asserted-Identity (RFC 3325) for the board to believe. Device
AORs have no account there: only the edge may bind them. This module writes the account
table that config reads (``-A 'USERS_DB="text:///abs/dir"'``): a db_text directory with a
``subscriber`` table (plain-text passwords, ``calculate_ha1`` in the cfg) and its ``version``
table, both mode 0600 in a 0700 directory.

    sipling proxy-user --db run/users --aor sip:alice@example.test --password-file run/alice.pw

The password comes from --password-file when that file exists; otherwise a fresh one is made
and written there (0600), so a softphone or `edge_remote --password-file` can use it. It is
never printed and never on the command line.
"""
import base64
import os

from sipling.sip import digest

from .errors import UserError
from .provision import aor_parts, write_private

HELP = "add or update a SIP account of the home proxy (Kamailio db_text, for edge.cfg)"

# db_text table headers as Kamailio 5.6 ships them (/usr/share/kamailio/dbtext/kamailio)
_SUBSCRIBER_HDR = "id(int,auto) username(string) domain(string) password(string) ha1(string) ha1b(string)\n"
_VERSION_HDR = "id(int,auto) table_name(string) table_version(int)\n"
_SUBSCRIBER_VERSION = 7


def _escape(v):
    # db_text separates columns with ':' and escapes ':' '\' and newlines with '\'
    return v.replace("\\", "\\\\").replace(":", "\\:").replace("\n", "\\n")


def _read_users(db):
    """{(user, domain): password} already in the table."""
    out = {}
    try:
        with open(os.path.join(db, "subscriber")) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return out
    for ln in lines:
        cols, cur, esc = [], [], False
        for c in ln:
            if esc:
                cur.append("\n" if c == "n" else c)
                esc = False
            elif c == "\\":
                esc = True
            elif c == ":":
                cols.append("".join(cur))
                cur = []
            else:
                cur.append(c)
        cols.append("".join(cur))
        if len(cols) >= 4:
            out[(cols[1], cols[2])] = cols[3]
    return out


def write_users(db, users):
    """Add or replace accounts: users is {(user, domain): password}. Creates db (0700)."""
    os.makedirs(db, mode=0o700, exist_ok=True)
    os.chmod(db, 0o700)
    table = _read_users(db)
    table.update(users)
    rows = [_SUBSCRIBER_HDR]
    for i, ((user, domain), pw) in enumerate(sorted(table.items()), 1):
        # the cfg computes HA1 from the password (calculate_ha1); db_text still wants the
        # HA1 columns filled (RFC 2617 3.2.2.2, realm = the domain as edge.cfg challenges)
        ha1 = digest.ha1(b"MD5", user.encode(), domain.encode(), pw.encode()).decode()
        ha1b = digest.ha1(b"MD5", ("%s@%s" % (user, domain)).encode(), domain.encode(), pw.encode()).decode()
        rows.append("%d:%s:%s:%s:%s:%s\n" % (i, _escape(user), _escape(domain), _escape(pw), ha1, ha1b))
    write_private(os.path.join(db, "subscriber"), "".join(rows))
    write_private(os.path.join(db, "version"), _VERSION_HDR + "1:subscriber:%d\n" % _SUBSCRIBER_VERSION)


def db_url(db):
    """The db_url Kamailio's auth_db takes for the directory db (absolute)."""
    return "text://" + os.path.abspath(db)


def new_password():
    return base64.urlsafe_b64encode(os.urandom(15)).decode()


def password_from_file(path, create=True):
    """The password in path (one line); a fresh one written there (0600) when it does not
    exist and create is true."""
    try:
        with open(path) as f:
            pw = f.read().strip("\r\n")
    except FileNotFoundError:
        if not create:
            raise UserError("--password-file %s does not exist" % path) from None
        pw = new_password()
        write_private(path, pw + "\n")
        return pw, True
    except OSError as e:
        raise UserError("--password-file %s: %s" % (path, e.strerror or e)) from None
    if not pw or "\n" in pw:
        raise UserError("--password-file %s must hold one non-empty line (the password)" % path)
    return pw, False


def add_arguments(p):
    p.add_argument("--db", required=True, metavar="DIR",
                   help="db_text directory Kamailio reads (edge.cfg: -A 'USERS_DB=\"text:///abs/DIR\"')")
    p.add_argument("--aor", required=True, help="the account, sip:alice@example.test")
    p.add_argument("--password-file", required=True, metavar="FILE",
                   help="its password; a fresh one is written there (mode 0600) if FILE does not exist")


def run(args):
    aor = args.aor
    user, domain = aor_parts(aor)
    pw, made = password_from_file(args.password_file)
    write_users(args.db, {(user, domain): pw})
    print("sipling: account %s in %s (%s password in %s); Kamailio: -A 'USERS_DB=\"%s\"'"
          % (aor, args.db, "new" if made else "existing", args.password_file, db_url(args.db)))
    return 0
