# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The lab's Mailu host runs Debian's Postfix, Dovecot and Rspamd (tests/lab/mail), configured from Mailu's files.

One lab host (network namespace, private mounts, sshd) with mailu.env, a DKIM key and the admin account, its
daemons started by the lab's mailu_start_command; a real BIND9 publishes the DKIM key. The tests talk to the
daemons from the controller, over the lab network, as a client on the internet would.
"""

from __future__ import annotations

import email
import email.utils
import imaplib
import os
import re
import secrets
import smtplib
import socket
import ssl
import subprocess

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.mail_check import MailCheck
from tests.lab import hosts as lab_hosts
from tests.lab.bind import Bind9
from tests.lab.mail import MailLab, dkim_txt, publish_txt
from tests.support.wait import wait_until

DOMAIN = "labmail.test"
USER = "admin@" + DOMAIN
PASSWORD = "Pw-" + secrets.token_hex(12)


def tls_context():
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@pytest.fixture(scope="module")
def dns(tmp_path_factory):
    server = Bind9(str(tmp_path_factory.mktemp("bind")), zones=(DOMAIN,))
    info = server.start()
    yield info
    server.stop()


@pytest.fixture(scope="module")
def mail_lab():
    with MailLab() as lab:
        yield lab


@pytest.fixture(scope="module")
def mx(mail_lab, dns):
    host = mail_lab.host("mx")
    host.write_env(DOMAIN)
    pem = host.add_dkim_key(DOMAIN)
    publish_txt(dns, DOMAIN, "dkim._domainkey", dkim_txt(pem))
    assert host.admin("admin", DOMAIN, PASSWORD, "create").returncode == 0
    assert host.start() == "Started"
    return host


def check(mx, dns, password=PASSWORD, **options):
    options.setdefault("fetch_timeout", 30)
    return MailCheck(mx.ip, USER, password, validate_certs=False, dns_server=dns["address"], dns_port=dns["port"],
                     **options).run()


# ---------------------------------------------------------------------------------------
def test_start_waits_for_every_daemon_and_a_second_start_changes_nothing(mx):
    status = mx.status()
    assert status["running"] is True and set(status["daemons"]) == {"postfix", "dovecot", "rspamd"}
    for port in (25, 465, 587, 993):  # start returned: every port accepts a connection now
        socket.create_connection((mx.ip, port), timeout=5).close()
    assert mx.start() == "Running"
    assert mx.status()["daemons"] == status["daemons"]


def test_the_daemons_are_debians_postfix_dovecot_and_rspamd(mx, dns):
    # The executables of the host's mail processes belong to the Debian packages.
    executables = {os.readlink("/proc/%d/exe" % pid) for pid, _daemon in mx.daemon_processes()}
    owners = subprocess.run(["dpkg", "-S"] + sorted(executables), capture_output=True, text=True, check=True).stdout
    packages = {line.split(":")[0] for line in owners.splitlines()}
    debian = {"postfix", "dovecot-core", "dovecot-imapd", "dovecot-lmtpd", "rspamd"}
    assert {"postfix", "dovecot-core", "rspamd"} <= packages <= debian

    # SMTP: Postfix's banner and EHLO answer.
    with smtplib.SMTP(timeout=10) as smtp:
        code, banner = smtp.connect(mx.ip, 587)
        assert (code, banner) == (220, b"mail.labmail.test ESMTP Postfix")
        code, answer = smtp.ehlo("client.test")
        assert code == 250 and answer.decode().splitlines()[0] == "mail.labmail.test"
        assert {"PIPELINING", "ETRN", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING"} <= {
            line.split()[0] for line in answer.decode().splitlines()[1:]}

    # IMAP: Dovecot's greeting and CAPABILITY.
    imap = imaplib.IMAP4_SSL(mx.ip, 993, ssl_context=tls_context(), timeout=10)
    try:
        assert b"Dovecot" in imap.welcome
        typ, data = imap.capability()
        assert typ == "OK" and {"IMAP4rev1", "AUTH=PLAIN", "ID", "IDLE"} <= set(data[0].decode().split())
        typ, data = imap.xatom("ID", '("name" "penguinmails-test")')
        assert b'"name" "Dovecot"' in b" ".join(imap.untagged_responses.get("ID", [b""]))
    finally:
        imap.logout()

    # DKIM: the signature is Rspamd's (its log records the signing; it oversigns From, To and Subject).
    result = check(mx, dns)
    assert result["failed_stage"] is None, result
    message_id = result["message_id"]
    signed = [line for line in mx.log("rspamd").splitlines() if message_id in line]
    assert signed and "DKIM_SIGNED" in signed[-1], mx.log("rspamd")[-3000:]
    raw = next(m for m in mx.mailbox(USER) if message_id.encode() in m)
    signature = email.message_from_bytes(raw)["DKIM-Signature"]
    assert re.search(r"h=from:from:.*subject:subject:", "".join(signature.split()))


def test_smtp_check_passes_and_the_probe_came_through_lmtp_and_imap(mx, dns):
    result = check(mx, dns, dkim_selector="dkim")
    assert result["failed_stage"] is None, result
    assert [result["stages"][s]["status"] for s in ("connect", "tls", "auth", "send", "fetch", "dkim")] == ["ok"] * 6
    assert "AUTH before STARTTLS refused" in result["stages"]["tls"]["msg"]
    assert result["dkim"] == {"domain": DOMAIN, "selector": "dkim", "dns_name": "dkim._domainkey.%s" % DOMAIN,
                              "verified": True}
    # Postfix handed it to Dovecot over LMTP; Dovecot stored it in the Maildir the check read over IMAP.
    raw = next(m for m in mx.mailbox(USER) if result["message_id"].encode() in m)
    assert re.search(rb"Received: from [^\r\n]+\r?\n\s+by mail\.labmail\.test with LMTP", raw)
    assert re.search(r"lmtp\(%s\).*msgid=%s: saved mail to INBOX" % (re.escape(USER), re.escape(result["message_id"])),
                     mx.log("dovecot"))


def test_auth_needs_starttls_and_the_right_password(mx, dns):
    with smtplib.SMTP(mx.ip, 587, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert not smtp.has_extn("auth")
        code, reply = smtp.docmd("AUTH", "PLAIN")
        assert code == 530 and reply == b"5.7.0 Must issue a STARTTLS command first"
        smtp.starttls(context=tls_context())
        smtp.ehlo("client.test")
        assert smtp.has_extn("auth")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.login(USER, "Wrong-" + PASSWORD)
        assert refused.value.smtp_code == 535
        assert smtp.login(USER, PASSWORD)[0] == 235
    wrong = check(mx, dns, password="Wrong-" + PASSWORD, send_probe=False)
    assert wrong["failed_stage"] == "auth" and "535" in wrong["msg"]
    with pytest.raises(imaplib.IMAP4.error):
        imaplib.IMAP4_SSL(mx.ip, 993, ssl_context=tls_context(), timeout=10).login(USER, "Wrong-" + PASSWORD)


def test_the_host_refuses_an_empty_or_short_admin_password(mx, dns):
    passwd = mx.path("/mailu/data/users.passwd")
    with open(passwd, "rb") as handle:
        before = handle.read()
    for password, error in (("", "Error: password is required"), ("short", "Error: This password is too short.")):
        proc = mx.admin("admin", DOMAIN, password)
        assert proc.returncode == 1 and proc.stderr.strip() == error
    with open(passwd, "rb") as handle:
        assert handle.read() == before
    assert PASSWORD.encode() not in before and b"{SHA512-CRYPT}$6$" in before
    assert oct(os.stat(passwd).st_mode & 0o777) == "0o640"
    assert check(mx, dns, password="", send_probe=False)["failed_stage"] == "auth"
    assert check(mx, dns, send_probe=False)["failed_stage"] is None


def test_admin_modes_answer_as_mailus_cli(mx, dns):
    other = "Other-" + secrets.token_hex(8)
    assert mx.admin("admin", DOMAIN, other, "create").stderr.strip() == "Error: user 'admin@labmail.test' exists, not created"
    done = mx.admin("admin", DOMAIN, other, "ifmissing")
    assert done.returncode == 0 and done.stdout.strip() == "user 'admin@labmail.test' exists, not updating"
    assert mx.admin("admin", DOMAIN, other, "bogus").stderr.strip() == "Error: invalid mode: 'bogus'"
    assert check(mx, dns, send_probe=False)["failed_stage"] is None  # still the old password

    # A new account of a new domain: Postfix accepts mail for it at once, Dovecot logs it in.
    created = mx.admin("info", "second.test", other, "update")
    assert created.returncode == 0 and created.stdout.strip() == "created admin user"
    message = ("From: someone@client.test\r\nTo: info@second.test\r\nSubject: hello\r\nDate: %s\r\n"
               "Message-ID: <%s@client.test>\r\n\r\nhi\r\n" % (email.utils.formatdate(), secrets.token_hex(8)))
    with smtplib.SMTP(mx.ip, 25, timeout=10) as smtp:
        smtp.ehlo("client.test")
        assert smtp.sendmail("someone@client.test", ["info@second.test"], message) == {}
        with pytest.raises(smtplib.SMTPRecipientsRefused) as unknown:
            smtp.sendmail("someone@client.test", ["nobody@second.test"], message)
        assert unknown.value.recipients["nobody@second.test"][0] == 550
    wait_until(lambda: mx.mailbox_count("info@second.test") == 1, 30, "the mail for info@second.test")
    updated = mx.admin("admin", DOMAIN, PASSWORD, "update")
    assert updated.returncode == 0 and updated.stdout.strip() == "updated admin password"


def test_stop_ends_every_daemon_and_destroying_the_host_ends_a_running_one(mail_lab, mx):
    host = mail_lab.host("mx-gone")
    host.write_env("gone.test")
    host.admin("admin", "gone.test", PASSWORD)
    assert host.start() == "Started"
    daemons = host.daemon_processes()
    assert {daemon for _pid, daemon in daemons} == {"postfix", "dovecot", "rspamd"}
    assert host.stop() == "Stopped"
    assert host.daemon_processes() == [] and not any(lab_hosts.pid_alive(pid) for pid, _daemon in daemons)
    for port in (25, 465, 587, 993):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((host.ip, port), timeout=5)
    assert host.stop() == "Not running"

    assert host.start() == "Started"
    daemons = host.daemon_processes()
    mail_lab.destroy("mx-gone")
    assert not any(lab_hosts.pid_alive(pid) for pid, _daemon in daemons)
    assert mx.status()["running"] is True  # the other host of the lab is untouched
