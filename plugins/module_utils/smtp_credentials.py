# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Mailu admin SMTP credentials of a tenant in Vault (``smtp/<tenant>/admin``).

Fields: ``username``, ``password``, ``webmail_url`` (kept as they are), ``secret_key`` (Mailu's
``SECRET_KEY``), ``last_rotated`` and ``rotation_policy`` (added by this collection). A new password is written with check-and-set
against the version read, so two concurrent rotations cannot both win; the previous password
stays in the KV history. Nothing here returns or formats the password.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import datetime
import secrets
import string

from ansible_collections.penguinmails.vps.plugins.module_utils.timeutil import format_time, parse_time
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import smtp_admin_path

# Letters and digits only: the password passes unquoted through Mailu's CLI, env files and SMTP AUTH PLAIN.
PASSWORD_ALPHABET = string.ascii_letters + string.digits
MIN_PASSWORD_LENGTH = 20
# What a stored password must meet before anything installs it (Mailu's own forms want 8 or more characters;
# a password an operator stored by hand is held to more than that).
POLICY_MIN_LENGTH = 12
SECRET_KEY_LENGTH = 16
SECRET_KEY_ALPHABET = string.ascii_uppercase + string.digits


class SmtpCredentialsError(Exception):
    """A rule refused the request; one line, never the password."""


def new_password(length=32):
    if length < MIN_PASSWORD_LENGTH:
        raise SmtpCredentialsError("password_length must be at least %d" % MIN_PASSWORD_LENGTH)
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _index in range(length))


def new_secret_key():
    """A Mailu SECRET_KEY (16 upper-case letters and digits, as Mailu's setup makes it)."""
    return "".join(secrets.choice(SECRET_KEY_ALPHABET) for _index in range(SECRET_KEY_LENGTH))


def policy_problem(data):
    """'' when the stored credentials may be installed, else the one rule they break (never the password)."""
    data = data or {}
    username, password = data.get("username") or "", data.get("password")
    if not username or "@" not in username:
        return "the username must be an address (local@domain)"
    if not isinstance(password, str) or password == "":
        return "the password is empty"
    if len(password) < POLICY_MIN_LENGTH:
        return "the password has fewer than %d characters" % POLICY_MIN_LENGTH
    if any(ch.isspace() for ch in password) or not password.isprintable():
        return "the password contains whitespace or control characters"
    return ""


def is_due(data, rotation_days, now):
    """Due when the last rotation is ``rotation_days`` or more ago; a record without one is due."""
    last = parse_time(data.get("last_rotated"))
    return last is None or now >= last + datetime.timedelta(days=rotation_days)


class Plan(object):
    """What a run does: ``action`` (none, created, rotated), ``before``/``after`` field dicts."""

    def __init__(self, action, before, after, version):
        self.action = action
        self.before = before
        self.after = after
        self.version = version

    @property
    def changed(self):
        return self.action != "none"


class SmtpCredentialsStore(object):
    def __init__(self, client, tenant_id, mount="smtp"):
        self.client = client
        self.mount, self.path = smtp_admin_path(tenant_id, mount)  # validates the tenant id and the mount
        self.where = "%s/%s" % (self.mount, self.path)

    def read(self):
        return self.client.read_or_none(self.mount, self.path)

    def plan(self, state, now, username=None, webmail_url=None, rotation_days=90, force=False, password_length=32,
             rotate_secret_key=False):
        current = self.read()
        before = dict(current.data) if current else None
        version = current.version if current else 0
        if before is None:
            if not username:
                raise SmtpCredentialsError("%s does not exist; give username to create it" % self.where)
            after = {"username": username, "password": new_password(password_length), "secret_key": new_secret_key()}
            if webmail_url:
                after["webmail_url"] = webmail_url
            return Plan("created", None, self._stamp(after, now, rotation_days), version)
        if not before.get("username"):
            raise SmtpCredentialsError("%s lacks a username; fix it in Vault first" % self.where)
        if state == "rotated" and (force or is_due(before, rotation_days, now) or not before.get("password")):
            after = dict(before, password=new_password(password_length))
            if rotate_secret_key:
                after["secret_key"] = new_secret_key()
            return Plan("rotated", before, self._stamp(after, now, rotation_days), version)
        return Plan("none", before, before, version)

    @staticmethod
    def _stamp(data, now, rotation_days):
        data["last_rotated"] = format_time(now)
        data["rotation_policy"] = "%d_days" % rotation_days
        return data

    def commit(self, plan):
        """Write ``plan.after`` with check-and-set against the version read; returns the new version."""
        plan.version = self.client.write(self.mount, self.path, plan.after, cas=plan.version)
        return plan.version


def public_view(data):
    """The fields that may be shown: everything but the password and the secret key."""
    return dict((key, value) for key, value in (data or {}).items() if key not in ("password", "secret_key"))
