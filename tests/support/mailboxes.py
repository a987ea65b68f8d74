# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A tenant's mailboxes as its IMAP client sees them, on a lab mail host (tests of the mailbox copy and backups).

    put(ip, user, password, "Archive", [("<id@x>", r"\\Seen \\Flagged")])   # IMAP APPEND, with flags, folder made
    send(ip, "admin@x.test", "<id@x>")                                      # SMTP to port 25, as a sending server
    view(ip, user, password) -> {folder: {message_id: frozenset(flags)}}, {folder: (uidvalidity, {message_id: uid})}
"""

from __future__ import annotations

import email.utils
import imaplib
import re
import smtplib
import ssl

from tests.support.wait import wait_until

# Flags Dovecot keeps in the maildir file name (\Recent is per session, never stored).
STORED_FLAGS = (r"\Seen", r"\Answered", r"\Flagged", r"\Deleted", r"\Draft")


def _context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(ip, user, password):
    imap = imaplib.IMAP4_SSL(ip, 993, ssl_context=_context(), timeout=30)
    imap.login(user, password)
    return imap


def message(message_id, sender, to, subject, body="hello"):
    return ("From: %s\r\nTo: %s\r\nSubject: %s\r\nMessage-ID: %s\r\nDate: %s\r\n\r\n%s\r\n"
            % (sender, to, subject, message_id, email.utils.formatdate(localtime=False), body)).encode()


def put(ip, user, password, folder, items):
    """APPEND ``items`` ([(message_id, flags)]) to ``folder`` (created when missing)."""
    imap = connect(ip, user, password)
    try:
        if folder != "INBOX":
            imap.create(folder)
        for message_id, flags in items:
            typ, data = imap.append(folder, "(%s)" % flags if flags else None, None,
                                    message(message_id, user, user, "copy test %s" % message_id))
            assert typ == "OK", data
    finally:
        imap.logout()


def send(ip, rcpt, message_id, port=25):
    """Deliver one message to ``rcpt`` through the host's Postfix, as another mail server would (no AUTH)."""
    with smtplib.SMTP(ip, port, timeout=30) as smtp:
        smtp.ehlo("sender.test")
        smtp.sendmail("someone@sender.test", [rcpt], message(message_id, "someone@sender.test", rcpt, "during the move"))


def view(ip, user, password):
    """Every folder's messages (Message-ID -> stored flags), and per folder (UIDVALIDITY, {Message-ID: UID})."""
    imap = connect(ip, user, password)
    flags, uids = {}, {}
    try:
        typ, listing = imap.list()
        assert typ == "OK", listing
        for line in listing:
            name = line.decode().rsplit(' "', 1)[-1].rstrip('"') if line.decode().endswith('"') else line.decode().split()[-1]
            typ, data = imap.select('"%s"' % name, readonly=True)
            assert typ == "OK", data
            validity = int(imap.untagged_responses.get("UIDVALIDITY", [b"0"])[-1])
            folder_flags, folder_uids = {}, {}
            if int(data[0]) > 0:
                typ, rows = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
                assert typ == "OK", rows
                for row in rows:
                    if not isinstance(row, tuple):
                        continue
                    head = row[0].decode()
                    uid = int(re.search(r"UID (\d+)", head).group(1))
                    found = re.search(r"FLAGS \(([^)]*)\)", head)
                    stored = frozenset(flag for flag in (found.group(1).split() if found else []) if flag in STORED_FLAGS)
                    message_id = re.search(rb"Message-ID:\s*(<[^>]+>)", row[1], re.IGNORECASE).group(1).decode()
                    folder_flags[message_id] = stored
                    folder_uids[message_id] = uid
            flags[name] = folder_flags
            uids[name] = (validity, folder_uids)
    finally:
        imap.logout()
    return flags, uids


def wait_for(ip, user, password, message_ids, timeout=60):
    """Wait until every Message-ID is in some folder (delivery through Postfix and LMTP is asynchronous)."""
    wanted = set(message_ids)

    def arrived():
        seen = set()
        for folder in view(ip, user, password)[0].values():
            seen |= set(folder)
        return wanted <= seen

    return wait_until(arrived, timeout, "messages %s in %s's mailboxes" % (sorted(wanted)[:3], user))
