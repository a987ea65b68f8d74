# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Hostwinds Cloud API client of penguinmails.vps.

The API (``POST https://clients.hostwinds.com/cloud/api.php``, form-encoded, fields
``action`` and ``API``) answers errors with HTTP 200 and ``[{"result": "error", ...}]``, so
every answer is checked for ``result``.  ``add_instance`` returns no serviceid: the new
instance is found by its ``srvrname``.

* Reads (``get_instances``, ``get_instance``, ``get_instance_ips``) are retried after
  transport errors and HTTP 429/5xx, with exponential back-off.
* Other actions are retried only when the connection was refused (the request cannot have
  reached the API); ``add_instance`` is never retried, so one call creates at most one order.
* Every failure is a :class:`HostwindsError` with a one-line message that never contains the
  API key.
* SSH keys for a new instance are keys stored in the account (``add_ssh_key``), named in ``add_instance``'s
  ``keys[]``; ``get_ssh_keys`` and ``delete_ssh_key`` manage them. docs/hostwinds.md writes down what the
  public documentation does not show about these actions (field names, answers) and how the lab checks it.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re
import time

try:
    import requests
    import requests.exceptions

    HAS_REQUESTS = True
    REQUESTS_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_REQUESTS = False
    REQUESTS_IMPORT_ERROR = _exc

DEFAULT_API_URL = "https://clients.hostwinds.com/cloud/api.php"
READ_ACTIONS = ("get_instances", "get_instance", "get_instance_ips", "get_ssh_keys")
# Account SSH key names: what the panel shows and accepts.
KEY_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
RETRY_STATUS = (429, 500, 502, 503, 504)
ACTIVE = "active"
FAILED_STATES = ("failed", "error", "fraud", "cancelled", "terminated")
# Hostwinds server names: keep them to what every panel, DNS label and shell accepts.
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")


class HostwindsError(Exception):
    """A Hostwinds failure with a one-line, secret-free message."""


class HostwindsConfigError(HostwindsError):
    """Settings are missing or invalid."""


class HostwindsAPIError(HostwindsError):
    """The API answered ``result: error`` (a wrong API key included)."""

    def __init__(self, message, action=None, api_message=None):
        super(HostwindsAPIError, self).__init__(message)
        self.action = action
        self.api_message = api_message


class HostwindsTransportError(HostwindsError):
    """The API could not be reached, or its answer was not usable."""

    def __init__(self, message, refused=False):
        super(HostwindsTransportError, self).__init__(message)
        self.refused = refused


class HostwindsAmbiguousName(HostwindsError):
    """More than one instance carries the server name."""


class HostwindsTimeout(HostwindsError):
    """An instance did not reach the wanted state before the deadline."""


class HostwindsBuildFailed(HostwindsError):
    """An instance's build ended in an error state."""


def validate_name(name):
    """Return ``name`` if it is a usable server name, else raise :class:`HostwindsConfigError`."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        shown = name if isinstance(name, str) and len(name) <= 80 else "%s..." % str(name)[:80]
        raise HostwindsConfigError(
            "invalid server name %r: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit" % shown
        )
    return name


def validate_key_name(name):
    if not isinstance(name, str) or not KEY_NAME_RE.match(name):
        raise HostwindsConfigError("invalid Hostwinds SSH key name %r: 1-64 letters, digits, '.', '_' or '-'" % _one_line(name, 80))
    return name


def _one_line(text, limit=300):
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _refused(exc):
    text = repr(exc).lower()
    return "refused" in text or "errno 111" in text


def instance_summary(instance):
    """The fields a module returns for an instance (no secrets: the root password is left out)."""
    if not instance:
        return None
    keys = ("serviceid", "srvrname", "hostname", "main_ip", "status", "vm_state", "task_state", "power_state", "location_id")
    return dict((key, instance.get(key)) for key in keys)


class HostwindsClient(object):
    """One API endpoint and key; see the module docstring."""

    def __init__(self, api_url, api_key, timeout=30, retries=3, session=None, sleep=time.sleep, clock=time.monotonic):
        if not HAS_REQUESTS:
            raise HostwindsConfigError("the Python library requests is required (pip install requests)")
        if not api_key:
            raise HostwindsConfigError("no Hostwinds API key: set the api_key option or HOSTWINDS_API_KEY")
        if not api_url or not re.match(r"^https?://", api_url):
            raise HostwindsConfigError("invalid Hostwinds api_url %r: it must start with https:// or http://" % _one_line(api_url, 120))
        try:
            self.timeout = float(timeout)
            self.retries = int(retries)
        except (TypeError, ValueError):
            raise HostwindsConfigError("invalid Hostwinds timeout or retries: they must be numbers")
        if self.timeout <= 0 or self.retries < 0:
            raise HostwindsConfigError("invalid Hostwinds options: timeout must be > 0 and retries >= 0")
        self.api_url = api_url
        self._api_key = api_key
        self.session = session or requests.Session()
        self._sleep = sleep
        self._clock = clock

    # -- the one place that talks to the API ---------------------------------------------
    def _scrub(self, text):
        """One line of ``text`` without the API key (masked before shortening, so no part of it survives)."""
        text = str(text)
        if self._api_key:
            text = text.replace(self._api_key, "********")
        return _one_line(text)

    def call(self, action, **fields):
        """POST one action; return the decoded answer, raising :class:`HostwindsError` on any failure.

        A list value is sent as a PHP array (``keys=[a, b]`` -> ``keys[]=a&keys[]=b``).
        """
        data = []
        for key, value in fields.items():
            if value is None:
                continue
            if isinstance(value, (list, tuple)):
                data.extend(("%s[]" % key, item) for item in value)
            else:
                data.append((key, value))
        data += [("action", action), ("API", self._api_key)]
        read = action in READ_ACTIONS
        attempt = 0
        while True:
            attempt += 1
            try:
                return self._post(action, data)
            except HostwindsTransportError as exc:
                retry = action != "add_instance" and (read or exc.refused)
                if not retry or attempt > self.retries:
                    raise
                self._sleep(min(0.5 * (2 ** (attempt - 1)), 5.0))

    def _post(self, action, data):
        where = "Hostwinds API %s at %s" % (action, self.api_url)
        try:
            response = self.session.post(self.api_url, data=data, timeout=self.timeout)
        except requests.exceptions.RequestException as exc:
            if isinstance(exc, requests.exceptions.SSLError):
                cause = "TLS verification failed"
            elif isinstance(exc, requests.exceptions.Timeout):
                cause = "timed out after %ss" % self.timeout
            elif _refused(exc):
                cause = "connection refused"
            else:
                cause = "connection failed (%s)" % type(exc).__name__
            raise HostwindsTransportError("cannot reach %s: %s" % (where, cause), refused=_refused(exc))
        if response.status_code in RETRY_STATUS:
            raise HostwindsTransportError("%s answered HTTP %s" % (where, response.status_code))
        if response.status_code in (401, 403):
            raise HostwindsAPIError("%s refused the request (HTTP %s): check the API key" % (where, response.status_code), action)
        if response.status_code != 200:
            raise HostwindsAPIError("%s answered HTTP %s" % (where, response.status_code), action)
        try:
            body = response.json()
        except ValueError:
            raise HostwindsTransportError("%s answered something that is not JSON" % where)
        self._check(action, body, where)
        return body

    def _check(self, action, body, where):
        items = body if isinstance(body, list) else [body]
        for item in items:
            if isinstance(item, dict) and str(item.get("result", "")).lower() == "error":
                message = self._scrub(item.get("message") or item.get("ERROR") or "unknown error")
                if message.lower().startswith("not authorized") or "api key" in message.lower():
                    text = "%s refused the API key: %s" % (where, message)
                else:
                    text = "%s failed: %s" % (where, message)
                raise HostwindsAPIError(text, action, message)
            if isinstance(item, dict) and "error" in item and "success" not in item and "result" not in item:
                raise HostwindsAPIError("%s failed: %s" % (where, self._scrub(item["error"])), action)

    # -- reads ---------------------------------------------------------------------------
    @staticmethod
    def _success(body):
        return body.get("success") if isinstance(body, dict) and "success" in body else body

    def get_instances(self):
        """Every instance of the account, as a list of dicts."""
        payload = self._success(self.call("get_instances"))
        if isinstance(payload, dict):
            # some API versions key instances by serviceid
            payload = [value for value in payload.values() if isinstance(value, dict)]
        if not isinstance(payload, list):
            return []
        return [item for item in payload if isinstance(item, dict) and "serviceid" in item]

    def get_instance(self, serviceid):
        payload = self._success(self.call("get_instance", serviceid=serviceid))
        if isinstance(payload, list) and payload:
            payload = payload[0]
        if not isinstance(payload, dict):
            raise HostwindsTransportError("Hostwinds API get_instance answered no instance for serviceid %s" % serviceid)
        return payload

    def get_instance_ips(self, serviceid):
        payload = self._success(self.call("get_instance_ips", serviceid=serviceid))
        return payload if isinstance(payload, list) else [payload]

    def find_by_name(self, name):
        """The one instance whose ``srvrname`` is ``name``, or None; raises if several share it."""
        found = [item for item in self.get_instances() if item.get("srvrname") == name]
        if len(found) > 1:
            ids = ", ".join(str(item.get("serviceid")) for item in found)
            raise HostwindsAmbiguousName(
                "%d Hostwinds instances are named %r (serviceids %s): resolve the duplicate in the panel first" % (len(found), name, ids)
            )
        return found[0] if found else None

    # -- actions -------------------------------------------------------------------------
    def add_instance(self, srvrname, template, rid, location_id, keys=None, billingcycle=None, qty=None):
        """Order one instance (never retried). ``keys``: names of SSH keys stored in the account.

        Returns the API's messages; find the instance with :meth:`find_by_name`.
        """
        validate_name(srvrname)
        names = [keys] if isinstance(keys, str) else list(keys or [])
        for name in names:
            validate_key_name(name)
        return self.call(
            "add_instance", srvrname=srvrname, template=template, rid=rid, location_id=location_id,
            keys=names or None, billingcycle=billingcycle, qty=qty,
        )

    # -- account SSH keys ------------------------------------------------------------------
    def get_ssh_keys(self):
        """The SSH keys stored in the account: a list of dicts with at least ``name`` and ``key``."""
        payload = self._success(self.call("get_ssh_keys"))
        if isinstance(payload, dict):
            payload = [value for value in payload.values() if isinstance(value, dict)]
        return [item for item in payload or [] if isinstance(item, dict) and item.get("name")]

    def find_ssh_key(self, name):
        for item in self.get_ssh_keys():
            if item.get("name") == name:
                return item
        return None

    def add_ssh_key(self, name, public_key):
        validate_key_name(name)
        if not public_key or "PRIVATE KEY" in public_key or len(public_key.split()) < 2:
            raise HostwindsConfigError("add_ssh_key needs an OpenSSH public key line")
        return self.call("add_ssh_key", name=name, ssh_key=public_key.strip())

    def delete_ssh_key(self, name):
        validate_key_name(name)
        return self.call("delete_ssh_key", name=name)

    def terminate(self, serviceid):
        return self.call("terminate", serviceid=serviceid)

    def boot(self, serviceid):
        return self.call("boot", serviceid=serviceid)

    def shutdown(self, serviceid):
        return self.call("shutdown", serviceid=serviceid)

    def reboot(self, serviceid):
        return self.call("reboot", serviceid=serviceid)

    def reinstall_instance(self, serviceid, template):
        return self.call("reinstall_instance", serviceid=serviceid, template=template)

    # -- waiting -------------------------------------------------------------------------
    def wait_for(self, predicate, timeout, what, interval=2.0):
        """Poll ``predicate()`` until it returns a truthy value; raise :class:`HostwindsTimeout` after ``timeout`` s."""
        deadline = self._clock() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if self._clock() >= deadline:
                raise HostwindsTimeout("timed out after %ss waiting for %s" % (timeout, what))
            self._sleep(min(interval, max(deadline - self._clock(), 0.05)))

    def wait_active(self, serviceid, timeout, interval=2.0):
        """Wait until the instance is ``active`` with a main IP; return it."""
        last = {}

        def built():
            instance = self.get_instance(serviceid)
            last["instance"] = instance
            status = str(instance.get("status") or "").lower()
            vm_state = str(instance.get("vm_state") or "").lower()
            if status in FAILED_STATES or vm_state == "error":
                raise HostwindsBuildFailed(
                    "Hostwinds instance %s (%s) failed to build: status %s, vm_state %s"
                    % (instance.get("srvrname"), serviceid, status or "?", vm_state or "?")
                )
            return instance if status == ACTIVE and instance.get("main_ip") else None

        try:
            return self.wait_for(built, timeout, "instance %s to become active" % serviceid, interval)
        except HostwindsTimeout:
            instance = last.get("instance") or {}
            raise HostwindsTimeout(
                "Hostwinds instance %s (serviceid %s) is not active after %ss (status %s, vm_state %s); "
                "rerun to keep waiting: it will not be created again"
                % (instance.get("srvrname"), serviceid, timeout, instance.get("status"), instance.get("vm_state"))
            )

    def wait_listed(self, name, timeout, interval=1.0):
        """Wait until an instance named ``name`` is listed (after ``add_instance``); return it."""
        return self.wait_for(lambda: self.find_by_name(name), timeout, "instance %r to be listed" % name, interval)

    def wait_gone(self, name, timeout, interval=1.0):
        """Wait until no instance named ``name`` is listed any more."""
        return self.wait_for(lambda: self.find_by_name(name) is None, timeout, "instance %r to be terminated" % name, interval)
