# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters that check playbook input with the collection's own validators (one rule, one message)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
import time

from ansible_collections.penguinmails.vps.plugins.module_utils import validators

_INT_RE = re.compile(r"[+-]?[0-9]+\Z")


def tenant_id_error(value, name="tenant_id"):
    """'' when ``value`` is a valid tenant id, else the one rule it breaks."""
    try:
        validators.validate_tenant_id(value if isinstance(value, str) else str(value))
    except validators.ValidationError as exc:
        return "%s: %s" % (name, str(exc))
    return ""


def integer_error(value, name, minimum=None, maximum=None):
    """'' when ``value`` is a whole number within the bounds, else the one rule it breaks."""
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _INT_RE.match(value.strip()))):
        return "%s must be a whole number, not %s" % (name, _show(value))
    number = int(value)
    if minimum is not None and number < minimum:
        return "%s must be at least %d, not %d" % (name, minimum, number)
    if maximum is not None and number > maximum:
        return "%s must be at most %d, not %d" % (name, maximum, number)
    return ""


def number_error(value, name, minimum=None):
    """'' when ``value`` is a finite number above ``minimum`` (exclusive; an int, a float or a decimal string), else the
    one rule it breaks."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return "%s must be a number, not %s" % (name, _show(value))
    try:
        number = float(value)
    except ValueError:
        return "%s must be a number, not %s" % (name, _show(value))
    if math.isnan(number) or math.isinf(number):
        return "%s must be a number, not %s" % (name, _show(value))
    if minimum is not None and number <= minimum:
        return "%s must be more than %s, not %s" % (name, minimum, _show(value))
    return ""


def choice_error(value, name, choices):
    """'' when ``value`` is one of ``choices``, else the rule."""
    if value in choices:
        return ""
    return "%s must be one of %s, not %s" % (name, ", ".join(str(c) for c in choices), _show(value))


def first_error(errors):
    """The first non-empty message of a list ('' when there is none)."""
    for error in errors or ():
        if error:
            return error
    return ""


def failure(tenant_id, error, stage):
    """A failure entry ``{tenant_id, error, stage}`` (for lists built with ``map``)."""
    return {"tenant_id": tenant_id, "error": error, "stage": stage}


def failure_line(entry):
    """``<tenant> (<stage>[ on <host>]): <error>`` for a failure entry."""
    where = entry.get("stage") or "?"
    if entry.get("role"):
        where += " " + entry["role"]
    if entry.get("host"):
        where += " on %s" % entry["host"]
    return "%s (%s): %s" % (entry.get("tenant_id"), where, entry.get("error"))


def known_public_keys(view):
    """Every public key of a key record's public view (current, fallback, grace, host keys), without duplicates."""
    view = view or {}
    keys = []
    grace = [g.get("public_key") or g.get("key") for g in view.get("grace_keys") or [] if isinstance(g, dict)]
    for value in [view.get("public_key"), view.get("fallback_public_key"), view.get("grace_public_key")] + grace + list(
            view.get("host_keys") or []) + list(view.get("revoked_keys") or []):
        if value and value not in keys:
            keys.append(value)
    return keys


def tenant_account(tenant_id):
    """The tenant's Unix account on its VPS (unique per tenant, at most 32 characters)."""
    return validators.tenant_account(tenant_id)


def vault_session_token(session):
    """The token of the run's Vault session (penguinmails.vps.vault_session) while it is valid for a while, else ''."""
    from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client  # hvac only where used

    session = session or {}
    expires = float(session.get("expires") or 0)
    if not session.get("token") or (expires and expires - time.time() <= vault_client.SESSION_MARGIN):
        return ""
    return session["token"]


def _show(value):
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class FilterModule(object):
    def filters(self):
        return {
            "tenant_id_error": tenant_id_error,
            "integer_error": integer_error,
            "number_error": number_error,
            "choice_error": choice_error,
            "first_error": first_error,
            "tenant_account": tenant_account,
            "failure": failure,
            "failure_line": failure_line,
            "known_public_keys": known_public_keys,
            "vault_session_token": vault_session_token,
        }
