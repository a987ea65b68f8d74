# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's stand-in for Mailu's admin CLI: ``flask mailu admin LOCALPART DOMAIN PASSWORD [--mode MODE]``.

    mailu_admin.py [--root /mailu] LOCALPART DOMAIN PASSWORD [--mode create|ifmissing|update]

Mailu keeps its accounts in the admin container's database and Dovecot asks the admin container for
them; the lab has no admin container, so this script writes the account where the lab's Dovecot reads
it: ``ROOT/data/users.passwd``, a Dovecot passwd-file (``address:{SHA512-CRYPT}$6$...``, mode 0640
root:dovecot, replaced atomically). The hash is made by ``openssl passwd -6`` with the password on its
stdin, never on a command line; nothing prints the password.

What it mirrors of Mailu 2024.06 (``core/admin/mailu/manage.py``, ``admin``):

* the modes and their answers: ``create`` (default) creates the admin user and fails with
  ``Error: user 'x@y' exists, not created`` when it exists; ``ifmissing`` leaves an existing user
  alone (``user 'x@y' exists, not updating``, exit 0); ``update`` sets the password of an existing
  user (``updated admin password``) or creates it; any other mode: ``Error: invalid mode: 'm'``;
* the domain is created with the first user of it (the lab's Postfix then accepts mail for it);
* the address is stored lower-case, as Mailu's IDNA e-mail columns do.

What Mailu's admin refuses, the lab refuses too, with exit 1 and nothing written: an empty password
(Mailu's user forms require one, ``DataRequired``) and a password shorter than 8 characters
(``This password is too short.``, ``mailu/utils.py`` ``isBadOrPwned``), a local part outside
Mailu's ``LOCALPART_REGEX`` and a domain that is not a DNS name. Mailu's CLI itself would store such
a password; the lab host refuses it so that an empty or short password from Vault fails at the
command that tried to set it. A password holding a newline or NUL cannot travel through SASL PLAIN and
is refused as well.

When the host's mail daemons run, Postfix's lists of domains and mailboxes are refreshed afterwards
(``mailu_host.py refresh``), as Mailu's Postfix sees a new user at once through the admin container.
"""

from __future__ import annotations

import argparse
import grp
import imaplib
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PASSWD = "data/users.passwd"
MODES = ("create", "ifmissing", "update")
MIN_LENGTH = 8
# Mailu's LOCALPART_REGEX (core/admin/mailu/ui/forms.py)
LOCALPART_RE = re.compile(r"[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-zA-Z0-9!#$%&'*+/=?^_`{|}~-]+)*")
LABEL_RE = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class AdminError(Exception):
    """Refused: printed as ``Error: <message>`` (one line, never the password), exit 1."""


def passwd_path(root):
    return os.path.join(root, PASSWD)


def read_accounts(root):
    """{address: 'SCHEME-hash'} from the passwd-file (empty when there is none)."""
    accounts = {}
    try:
        with open(passwd_path(root)) as handle:
            for line in handle:
                line = line.rstrip("\n")
                if line and not line.startswith("#") and ":" in line:
                    address, hashed = line.split(":", 2)[:2]
                    accounts[address] = hashed
    except FileNotFoundError:
        pass
    return accounts


def write_accounts(root, accounts):
    """Replace the passwd-file atomically (0640 root:dovecot); its mtime always moves forward.

    Dovecot re-reads a passwd-file when its mtime (seconds) or size changes, and two SHA512-CRYPT files
    of one account have the same size: a rewrite within the same second must still look changed.
    """
    path = passwd_path(root)
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    try:
        previous = os.stat(path).st_mtime
    except FileNotFoundError:
        previous = 0
    text = "".join("%s:%s\n" % (address, accounts[address]) for address in sorted(accounts))
    fd, tmp = tempfile.mkstemp(prefix=".users.", dir=directory)
    try:
        os.fchmod(fd, 0o640)
        try:
            os.fchown(fd, 0, grp.getgrnam("dovecot").gr_gid)
        except KeyError:  # no dovecot group: root only
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        stamp = max(time.time(), previous + 1)
        os.utime(tmp, (stamp, stamp))
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_password(password):
    if not password:
        raise AdminError("password is required")
    if "\n" in password or "\r" in password or "\0" in password:
        raise AdminError("the password must not contain a line break or NUL")
    if len(password) < MIN_LENGTH:
        raise AdminError("This password is too short.")


def check_address(localpart, domain):
    if not LOCALPART_RE.fullmatch(localpart or ""):
        raise AdminError("invalid localpart %r" % (localpart,))
    labels = (domain or "").lower().rstrip(".").split(".")
    if len(labels) < 2 or len(domain) > 253 or not all(LABEL_RE.fullmatch(label) for label in labels):
        raise AdminError("invalid domain %r" % (domain,))


def hash_password(password):
    """``{SHA512-CRYPT}$6$...`` from openssl, the password on stdin."""
    proc = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n", capture_output=True,
                          text=True, check=False)
    hashed = proc.stdout.strip()
    if proc.returncode != 0 or not hashed.startswith("$6$") or ":" in hashed:
        raise AdminError("openssl passwd -6 failed: %s" % (proc.stderr.strip().splitlines() or ["no output"])[-1])
    return "{SHA512-CRYPT}" + hashed


def admin(root, localpart, domain, password, mode="create"):
    """Create or update the admin account as Mailu's ``flask mailu admin`` does; return the message."""
    if mode not in MODES:
        raise AdminError("invalid mode: %r" % (mode,))
    check_address(localpart, domain)
    address = "%s@%s" % (localpart.lower(), domain.lower().rstrip("."))
    accounts = read_accounts(root)
    if address in accounts:
        if mode == "ifmissing":
            return "user %r exists, not updating" % address
        if mode == "create":
            raise AdminError("user %r exists, not created" % address)
        message = "updated admin password"
    else:
        message = "created admin user"
    check_password(password)
    accounts[address] = hash_password(password)
    write_accounts(root, accounts)
    return message


def refresh_daemons(root):
    """Let the running Postfix see the accounts' domains and mailboxes (nothing when it is not running)."""
    proc = subprocess.run([sys.executable, os.path.join(HERE, "mailu_host.py"), "refresh", "--root", root],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise AdminError("refreshing Postfix failed: %s" % (proc.stderr.strip().splitlines() or ["no output"])[-1])


def wait_until_dovecot_accepts(root, address, password, timeout=20):
    """Return once the running Dovecot accepts ``password`` for ``address`` (an IMAP login).

    Dovecot looks at a passwd-file at most once a second, so a password changed within the second of the last
    lookup is not seen yet, while Mailu's Dovecot asks the admin container and sees it at once. The stand-in
    therefore returns only when Dovecot takes the new password, as Mailu's admin does. Nothing to wait for when
    Dovecot does not run or serves no IMAPS.
    """
    sys.path.insert(0, HERE)
    import mailu_host  # pylint: disable=import-outside-toplevel

    if "dovecot" not in mailu_host.daemon_pids(root):
        return
    values = mailu_host.settings(root, mailu_host.read_env(root))
    if values["IMAPS_PORT"] == "0":
        return
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the lab host's own certificate; only the password is in question
    deadline = time.monotonic() + timeout
    while True:
        try:
            with imaplib.IMAP4_SSL(values["BIND"], int(values["IMAPS_PORT"]), ssl_context=context, timeout=5) as imap:
                imap.login(address, password)
                return
        except (imaplib.IMAP4.error, OSError):
            pass
        if time.monotonic() > deadline:
            raise AdminError("Dovecot does not accept the new password of %s after %ss" % (address, timeout))
        time.sleep(0.1)  # polling Dovecot for the condition, not waiting for time


def main(argv=None):
    parser = argparse.ArgumentParser(prog="mailu admin", description="Create an admin user (Mailu's flask mailu admin)")
    parser.add_argument("localpart")
    parser.add_argument("domain_name")
    parser.add_argument("password")
    parser.add_argument("-m", "--mode", default="create", metavar="MODE",
                        help="create (default): error if the user exists; ifmissing: only if the user is missing; "
                             "update: create the user or update its password")
    parser.add_argument("--root", default="/mailu", help="Mailu's root directory (default /mailu)")
    args = parser.parse_args(argv)
    try:
        message = admin(os.path.abspath(args.root), args.localpart, args.domain_name, args.password, args.mode)
        refresh_daemons(os.path.abspath(args.root))
        if "not updating" not in message:
            wait_until_dovecot_accepts(os.path.abspath(args.root), ("%s@%s" % (args.localpart, args.domain_name)).lower(),
                                       args.password)
    except AdminError as exc:
        print("Error: %s" % exc, file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
