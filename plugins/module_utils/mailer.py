# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Send one plain-text mail through a relay, the safe way round.

* ``security``: ``starttls`` (default; the relay must offer STARTTLS), ``tls`` (implicit TLS, port 465)
  or ``none`` (a local relay on a trusted network).
* TLS is verified by default (``ssl.create_default_context()``, optional CA file); ``validate_certs=False``
  turns it off explicitly.
* Credentials are only ever sent over an encrypted connection: with ``security=none`` a username is refused.
* Errors are one line, without the password.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import smtplib
import socket
import ssl
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

SECURITY = ("starttls", "tls", "none")


class MailError(Exception):
    """The mail could not be sent (one line, no secret)."""


def tls_context(validate_certs=True, ca_path=None):
    if not validate_certs:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    return ssl.create_default_context(cafile=ca_path) if ca_path else ssl.create_default_context()


def build(sender, to, subject, body, headers=None):
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rsplit("@", 1)[-1] if "@" in sender else None)
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    return message


def send(message, host, port=None, security="starttls", username=None, password=None, validate_certs=True,
         ca_path=None, timeout=30, tls_server_name=None):
    """Send ``message``; returns the relay's refusals per recipient ({} when all were accepted)."""
    if security not in SECURITY:
        raise MailError("invalid security %r: choose one of %s" % (security, ", ".join(SECURITY)))
    if username and security == "none":
        raise MailError("refusing to send SMTP credentials over an unencrypted connection (security=none)")
    port = int(port or {"starttls": 587, "tls": 465, "none": 25}[security])
    context = tls_context(validate_certs, ca_path)
    server_name = tls_server_name or host
    try:
        if security == "tls":
            client = _SMTPSSLNamed(host, port, timeout=timeout, context=context, server_name=server_name)
        else:
            client = smtplib.SMTP(host, port, timeout=timeout)
        try:
            client.ehlo()
            if security == "starttls":
                if not client.has_extn("starttls"):
                    raise MailError("%s:%d does not offer STARTTLS" % (host, port))
                client._host = server_name  # the name the certificate must carry
                client.starttls(context=context)
                client.ehlo()
            if username:
                client.login(username, password or "")
            return client.send_message(message)
        finally:
            try:
                client.quit()
            except (smtplib.SMTPException, OSError):
                pass
    except MailError:
        raise
    except smtplib.SMTPAuthenticationError as exc:
        raise MailError("%s:%d refused the login (%s)" % (host, port, exc.smtp_code))
    except smtplib.SMTPRecipientsRefused as exc:
        raise MailError("%s:%d refused every recipient (%s)" % (host, port, ", ".join(sorted(exc.recipients))))
    except smtplib.SMTPResponseException as exc:
        raise MailError("%s:%d answered %s %s" % (host, port, exc.smtp_code, _text(exc.smtp_error)))
    except ssl.SSLError as exc:
        raise MailError("TLS with %s:%d failed: %s" % (host, port, exc.reason or exc.__class__.__name__))
    except (smtplib.SMTPException, socket.error) as exc:
        raise MailError("cannot send through %s:%d: %s" % (host, port, exc.__class__.__name__ if not str(exc) else exc))


class _SMTPSSLNamed(smtplib.SMTP_SSL):
    """SMTP over implicit TLS that checks the certificate against ``server_name`` (not the address)."""

    def __init__(self, host, port, timeout, context, server_name):
        self._server_name = server_name
        smtplib.SMTP_SSL.__init__(self, host, port, timeout=timeout, context=context)

    def _get_socket(self, host, port, timeout):
        sock = socket.create_connection((host, port), timeout)
        return self.context.wrap_socket(sock, server_hostname=self._server_name)


def _text(value):
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return " ".join(str(value).split())[:200]
