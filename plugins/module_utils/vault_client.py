# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one Vault (and OpenBao) client of penguinmails.vps.

Every module, lookup and callback of the collection talks to Vault through
:func:`get_client`.  It

* resolves connection and auth settings from options, then the same environment
  variables community.hashi_vault honours (``VAULT_ADDR``, ``VAULT_TOKEN``,
  ``VAULT_NAMESPACE``, ``VAULT_CACERT``, ``VAULT_SKIP_VERIFY``), then defaults;
* logs in once per process and settings (token, AppRole or JWT) and reuses the
  authenticated client, with its HTTP keep-alive session, for every later call;
* speaks KV v2 (read a version or a field, list, write with check-and-set,
  metadata), response wrapping and health;
* retries reads on 412/429/5xx and transport errors, writes only where the request
  cannot have reached Vault (connection refused);
* turns every failure into a :class:`VaultError` whose one-line message names the
  path and the cause and never contains a token, password or key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os
import time

try:
    import hvac
    import hvac.exceptions
    import requests
    import requests.exceptions
    import requests.utils

    HAS_HVAC = True
    HVAC_IMPORT_ERROR = None
except ImportError as _exc:  # pragma: no cover - exercised by the sanity import test
    HAS_HVAC = False
    HVAC_IMPORT_ERROR = _exc

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import validate_mount

AUTH_METHODS = ("token", "approle", "jwt")
DEFAULT_AUTH_MOUNTS = {"approle": "approle", "jwt": "jwt"}
READ_RETRY_STATUS = (412, 429, 500, 502, 503, 504)
_TRUE = ("1", "true", "yes", "on", "y", "t")

# Option table shared by modules (argument specs) and plugins (lookup, callback):
# name -> (environment variables in order, default, no_log)
OPTION_SOURCES = {
    "url": (("VAULT_ADDR",), None, False),
    "token": (("VAULT_TOKEN",), None, True),
    "namespace": (("VAULT_NAMESPACE",), None, False),
    "ca_cert": (("VAULT_CACERT",), None, False),
    "validate_certs": ((), None, False),  # VAULT_SKIP_VERIFY, inverted: see resolve_settings
    "timeout": (("VAULT_CLIENT_TIMEOUT",), 10, False),
    "retries": (("VAULT_MAX_RETRIES",), 3, False),
    "auth_method": (("VAULT_AUTH_METHOD",), "token", False),
    "auth_mount": (("VAULT_AUTH_MOUNT",), None, False),
    "role_id": (("VAULT_ROLE_ID",), None, False),
    "secret_id": (("VAULT_SECRET_ID",), None, True),
    "jwt": (("VAULT_JWT",), None, True),
    "jwt_role": (("VAULT_JWT_ROLE",), None, False),
}


def vault_argument_spec():
    """The ``argument_spec`` entries every Vault-using module shares (doc fragment ``vault``)."""
    return dict(
        url=dict(type="str", aliases=["vault_addr"]),
        token=dict(type="str", no_log=True),
        namespace=dict(type="str"),
        ca_cert=dict(type="path", aliases=["cacert"]),
        validate_certs=dict(type="bool"),
        timeout=dict(type="int", default=10),
        retries=dict(type="int", default=3),
        auth_method=dict(type="str", choices=list(AUTH_METHODS)),
        auth_mount=dict(type="str"),
        role_id=dict(type="str"),
        secret_id=dict(type="str", no_log=True),
        jwt=dict(type="str", no_log=True),
        jwt_role=dict(type="str"),
    )


def vault_module(options, **kwargs):
    """An ``AnsibleModule`` with the shared Vault options plus ``options`` (check mode supported unless
    ``supports_check_mode=False``); it fails with the usual message when hvac is missing."""
    from ansible.module_utils.basic import AnsibleModule, missing_required_lib  # modules only, not the lookup

    argument_spec = vault_argument_spec()
    argument_spec.update(options)
    kwargs.setdefault("supports_check_mode", True)
    module = AnsibleModule(argument_spec=argument_spec, **kwargs)
    if not HAS_HVAC:
        module.fail_json(msg=missing_required_lib("hvac"), exception=str(HVAC_IMPORT_ERROR))
    return module


# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------
class VaultError(Exception):
    """A Vault failure with a one-line, secret-free message."""

    def __init__(self, message, path=None, status=None):
        super(VaultError, self).__init__(message)
        self.path = path
        self.status = status


class VaultConfigError(VaultError):
    """Settings are missing or contradictory."""


class VaultUnreachable(VaultError):
    """Vault could not be reached (refused, DNS, TLS, timeout)."""


class VaultSealed(VaultError):
    """Vault answered that it is sealed or not initialised."""


class VaultAuthError(VaultError):
    """Login failed or the token is not valid."""


class VaultPermissionDenied(VaultAuthError):
    """The token is valid but its policies do not allow the request."""


class VaultNotFound(VaultError):
    """No secret (or no such version) at the path."""


class VaultCASConflict(VaultError):
    """A check-and-set write lost: the secret changed since it was read."""


# ---------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------
def _env(names, environ):
    for name in names:
        value = environ.get(name)
        if value not in (None, ""):
            return value
    return None


def resolve_settings(options, environ=None):
    """Resolve the effective settings: explicit option, then environment, then default.

    ``options`` is a mapping of option names (those of :data:`OPTION_SOURCES`) to values,
    ``None`` meaning "not set".  Returns a new dict; raises :class:`VaultConfigError`.
    """
    environ = os.environ if environ is None else environ
    settings = {}
    for name, (env_names, default, _no_log) in OPTION_SOURCES.items():
        value = options.get(name)
        if value is None:
            value = _env(env_names, environ)
        if value is None:
            value = default
        settings[name] = value
    if settings["validate_certs"] is None:
        skip = (environ.get("VAULT_SKIP_VERIFY") or "").strip().lower()
        settings["validate_certs"] = skip not in _TRUE
    elif isinstance(settings["validate_certs"], str):
        settings["validate_certs"] = settings["validate_certs"].strip().lower() in _TRUE
    for name in ("timeout", "retries"):
        try:
            settings[name] = int(settings[name])
        except (TypeError, ValueError):
            raise VaultConfigError("invalid Vault option %s: %r is not a whole number" % (name, settings[name]))
    if settings["timeout"] <= 0 or settings["retries"] < 0:
        raise VaultConfigError("invalid Vault options: timeout must be > 0 and retries >= 0")
    if not settings["url"]:
        raise VaultConfigError("no Vault address: set the url option or VAULT_ADDR")
    # Several addresses (comma-separated) name the nodes of an HA cluster: the client moves
    # to the next one when a node cannot be reached.
    urls = [u.strip().rstrip("/") for u in str(settings["url"]).split(",") if u.strip()]
    if not urls:
        raise VaultConfigError("no Vault address: set the url option or VAULT_ADDR")
    settings["url"] = ",".join(urls)
    method = settings["auth_method"]
    if method not in AUTH_METHODS:
        raise VaultConfigError("invalid auth_method %r: choose one of %s" % (method, ", ".join(AUTH_METHODS)))
    if method == "token" and not settings["token"]:
        settings["token"] = _read_token_file(environ)
        if not settings["token"]:
            raise VaultConfigError("auth_method token needs a token: set the token option or VAULT_TOKEN")
    if method == "approle" and not (settings["role_id"] and settings["secret_id"]):
        raise VaultConfigError("auth_method approle needs role_id and secret_id (or VAULT_ROLE_ID, VAULT_SECRET_ID)")
    if method == "jwt" and not (settings["jwt"] and settings["jwt_role"]):
        raise VaultConfigError("auth_method jwt needs jwt and jwt_role (or VAULT_JWT, VAULT_JWT_ROLE)")
    if method != "token" and not settings["auth_mount"]:
        settings["auth_mount"] = DEFAULT_AUTH_MOUNTS[method]
    return settings


def _read_token_file(environ):
    home = environ.get("HOME")
    if not home:
        return None
    path = os.path.join(home, ".vault-token")
    try:
        with open(path) as handle:
            return handle.read().strip() or None
    except (IOError, OSError):
        return None


def _cache_key(settings):
    digest = hashlib.sha256()
    for name in sorted(settings):
        digest.update(("%s=%r\0" % (name, settings[name])).encode("utf-8"))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------------------
_CLIENTS = {}


def get_client(options, environ=None):
    """Return the process-wide :class:`VaultClient` for these options, logging in on first use."""
    if not HAS_HVAC:
        raise VaultConfigError("the Python libraries hvac and requests are required (pip install hvac requests)")
    settings = resolve_settings(options, environ)
    key = _cache_key(settings)
    client = _CLIENTS.get(key)
    if client is None:
        client = VaultClient(settings)
        client.login()
        _CLIENTS[key] = client
    return client


def clear_client_cache():
    """Forget every cached client (tests, and forked workers that must not share sockets)."""
    for client in _CLIENTS.values():
        client.close()
    _CLIENTS.clear()


class Secret(object):
    """One KV v2 secret version: ``data`` (the fields), ``version`` and ``metadata``."""

    __slots__ = ("mount", "path", "data", "version", "metadata")

    def __init__(self, mount, path, data, metadata):
        self.mount = mount
        self.path = path
        self.data = data or {}
        self.metadata = metadata or {}
        self.version = self.metadata.get("version")

    def field(self, name):
        if name not in self.data:
            raise VaultNotFound(
                "field %r not found in secret %s/%s (fields: %s)"
                % (name, self.mount, self.path, ", ".join(sorted(self.data)) or "none"),
                path="%s/%s" % (self.mount, self.path),
            )
        return self.data[name]


class VaultClient(object):
    """An authenticated connection to one Vault; see :func:`get_client`."""

    def __init__(self, settings):
        self.settings = settings
        self.urls = settings["url"].split(",")
        self.url = self.urls[0]
        self.verify = settings["ca_cert"] or settings["validate_certs"]
        if self.verify is True:
            # What requests would pick from the environment on every call, decided once.
            self.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self.session = requests.Session()
        # Proxies from the environment are resolved once here instead of on every request
        # (requests re-reads the whole environment per call: a third of a KV read's time).
        proxies = requests.utils.get_environ_proxies(self.url)
        self.session.trust_env = False
        self.hvac = hvac.Client(
            url=self.url,
            namespace=settings["namespace"],
            verify=self.verify,
            timeout=settings["timeout"],
            proxies=proxies or None,
            session=self.session,
        )
        self.logins = 0
        # Vault's request id of the last read or wrap (its audit log's request.id): the collection's audit events of
        # reads of private keys carry it (details.vault_request_id) to find the same request in Vault's log.
        self.last_request_id = None

    # -- authentication ------------------------------------------------------------------
    def login(self):
        method = self.settings["auth_method"]
        where = "%s login at %s" % (method, self.url)
        if method == "token":
            self.hvac.token = self.settings["token"]
            self.logins += 1
            return
        if method == "approle":

            def call():
                return self.hvac.auth.approle.login(
                    role_id=self.settings["role_id"],
                    secret_id=self.settings["secret_id"],
                    mount_point=self.settings["auth_mount"],
                    use_token=True,
                )

        else:

            def call():
                return self.hvac.auth.jwt.jwt_login(
                    role=self.settings["jwt_role"],
                    jwt=self.settings["jwt"],
                    path=self.settings["auth_mount"],
                    use_token=True,
                )

        self._call(call, where, retry=False, auth=True)
        self.logins += 1

    def close(self):
        try:
            self.session.close()
        except Exception:  # pragma: no cover - best effort
            pass

    # -- the one place that talks to Vault ----------------------------------------------
    def _call(self, func, where, retry=True, auth=False, not_found=None):
        """Run one request with re-login, fail-over and retries; raise a VaultError.

        ``retry`` says whether the request may be repeated after it may have reached Vault
        (reads, and check-and-set writes: a repeated CAS write can never apply twice).
        Requests that provably never reached Vault (connection refused) are always retried.
        """
        relogged = auth or self.settings["auth_method"] == "token"
        attempt = 0
        while True:
            attempt += 1
            try:
                return func()
            except Exception as exc:  # translated below; never re-raised raw
                error, retryable = self._translate(exc, where, auth, not_found)
                if isinstance(error, VaultAuthError) and not relogged and error.status == 403:
                    # A cached AppRole/JWT token may have expired: log in again once.
                    relogged = True
                    self.login()
                    continue
                if isinstance(error, VaultUnreachable) and len(self.urls) > 1:
                    self._next_node()
                if retryable and (retry or _refused(exc)) and attempt <= self.settings["retries"]:
                    time.sleep(min(0.1 * (2 ** (attempt - 1)), 2.0))
                    continue
                raise error

    def _next_node(self):
        self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]
        self.hvac.url = self.url

    def _translate(self, exc, where, auth, not_found):
        """Map an hvac/requests exception to (VaultError, retryable)."""
        if HAS_HVAC and isinstance(exc, requests.exceptions.RequestException):
            if isinstance(exc, requests.exceptions.SSLError):
                cause = "TLS verification failed (set ca_cert, or validate_certs=false for a lab)"
            elif isinstance(exc, requests.exceptions.Timeout):
                cause = "timed out after %ss" % self.settings["timeout"]
            elif _refused(exc):
                cause = "connection refused"
            else:
                cause = "connection failed (%s)" % type(exc).__name__
            return VaultUnreachable("cannot reach Vault at %s for %s: %s" % (self.url, where, cause)), True
        status = getattr(exc, "status_code", None) or _STATUS.get(type(exc).__name__)
        detail = _server_errors(exc)
        if status == 503 or type(exc).__name__ in ("VaultDown", "VaultNotInitialized"):
            if "sealed" in detail.lower() or type(exc).__name__ == "VaultDown":
                return VaultSealed("Vault at %s is sealed; unseal it before %s" % (self.url, where), status=503), False
            return VaultError("Vault at %s is unavailable (503) for %s" % (self.url, where), status=503), True
        if status == 501:
            return VaultSealed("Vault at %s is not initialised" % self.url, status=501), False
        if auth and status in (400, 401, 403):
            return VaultAuthError("%s failed: credentials refused%s" % (where, _tail(detail)), status=status), False
        if status in (401, 403):
            return (
                VaultPermissionDenied(
                    "permission denied for %s (token invalid or expired, or its policies do not allow it)" % where,
                    status=status,
                ),
                False,
            )
        if status == 404:
            return VaultNotFound(not_found or "not found: %s" % where, status=404), False
        if status == 400 and "did not match" in detail:
            return VaultCASConflict(
                "check-and-set conflict on %s: it changed since it was read; re-read and retry" % where, status=400
            ), False
        if status == 400 and "upgrade from non-versioned to versioned" in detail:
            # A KV v2 mount that was just enabled (or a new HA leader) is upgrading: transient.
            return VaultError("Vault is still preparing the mount for %s" % where, status=400), True
        if status in READ_RETRY_STATUS:
            return VaultError("Vault error %s on %s%s" % (status, where, _tail(detail)), status=status), True
        if status:
            return VaultError("Vault refused %s (HTTP %s)%s" % (where, status, _tail(detail)), status=status), False
        return VaultError("unexpected error on %s: %s" % (where, type(exc).__name__)), False

    # -- KV v2 ---------------------------------------------------------------------------
    def read(self, mount, path, version=None):
        """Read one version (default: latest) of ``mount/path``; returns a :class:`Secret`."""
        validate_mount(mount)
        where = "read of %s/%s" % (mount, path) + (" version %s" % version if version else "")
        response = self._call(
            lambda: self.hvac.secrets.kv.v2.read_secret_version(
                path=path, version=version, mount_point=mount, raise_on_deleted_version=True
            ),
            where,
            not_found="secret not found: %s/%s%s" % (mount, path, " version %s" % version if version else ""),
        )
        self.last_request_id = response.get("request_id") or None
        body = response.get("data") or {}
        return Secret(mount, path, body.get("data"), body.get("metadata"))

    def read_or_none(self, mount, path, version=None):
        try:
            return self.read(mount, path, version)
        except VaultNotFound:
            return None

    def list(self, mount, path=""):
        """List the keys below ``mount/path`` (an empty list when there are none)."""
        validate_mount(mount)
        try:
            response = self._call(
                lambda: self.hvac.secrets.kv.v2.list_secrets(path=path, mount_point=mount),
                "list of %s/%s" % (mount, path),
            )
        except VaultNotFound:
            return []
        return sorted((response.get("data") or {}).get("keys") or [])

    def metadata(self, mount, path):
        validate_mount(mount)
        response = self._call(
            lambda: self.hvac.secrets.kv.v2.read_secret_metadata(path=path, mount_point=mount),
            "metadata of %s/%s" % (mount, path),
            not_found="secret not found: %s/%s" % (mount, path),
        )
        return response.get("data") or {}

    def write(self, mount, path, data, cas=None):
        """Write a new version; with ``cas`` (0 = must not exist) the write is check-and-set.

        Returns the new version number. A check-and-set write is retried like a read (it can
        never apply twice); if a retry meets a conflict because the first attempt did apply,
        the version holding exactly ``data`` is returned.
        """
        validate_mount(mount)
        where = "write of %s/%s" % (mount, path) + (" (cas=%s)" % cas if cas is not None else "")
        attempts = []

        def request():
            attempts.append(1)
            return self.hvac.secrets.kv.v2.create_or_update_secret(path=path, secret=data, cas=cas, mount_point=mount)

        try:
            response = self._call(request, where, retry=cas is not None)
        except VaultCASConflict:
            if len(attempts) < 2:
                raise
            current = self.read_or_none(mount, path)
            if current is None or current.data != data or current.version != cas + 1:
                raise
            return current.version
        return ((response or {}).get("data") or {}).get("version")

    def delete_latest(self, mount, path):
        """Soft-delete the latest version (recoverable with undelete; history is kept)."""
        validate_mount(mount)
        self._call(
            lambda: self.hvac.secrets.kv.v2.delete_latest_version_of_secret(path=path, mount_point=mount),
            "delete of %s/%s" % (mount, path),
            retry=False,
        )

    # -- wrapping ------------------------------------------------------------------------
    def wrap_read(self, mount, path, ttl="15m", version=None):
        """Read ``mount/path`` (a version, default the latest) as a single-use response-wrapping token;
        returns its wrap_info (token, ttl, creation_path ``<mount>/data/<path>``, accessor)."""
        validate_mount(mount)
        url = "/v1/%s/data/%s" % (mount, path) + ("?version=%d" % int(version) if version else "")
        response = self._call(
            lambda: self.hvac.adapter.get(url, headers={"X-Vault-Wrap-TTL": str(ttl)}),
            "wrapped read of %s/%s" % (mount, path),
            not_found="secret not found: %s/%s" % (mount, path),
        )
        self.last_request_id = _json(response).get("request_id") or None
        return _json(response).get("wrap_info") or {}

    def wrap(self, data, ttl="15m"):
        """Wrap arbitrary data; returns wrap_info (token, ttl, creation_time, accessor)."""
        response = self._call(
            lambda: self.hvac.adapter.post("/v1/sys/wrapping/wrap", json=data, headers={"X-Vault-Wrap-TTL": str(ttl)}),
            "wrap",
            retry=False,
        )
        self.last_request_id = _json(response).get("request_id") or None
        return _json(response).get("wrap_info") or {}

    def unwrap(self, wrapping_token):
        """Unwrap a response-wrapping token (single use); returns the wrapped response's data."""
        response = self._call(
            lambda: self.hvac.adapter.post("/v1/sys/wrapping/unwrap", json={"token": wrapping_token}),
            "unwrap of a wrapping token",
            retry=False,
        )
        return _json(response).get("data") or {}

    # -- other endpoints (sys, auth, identity) ------------------------------------------
    def api(self, method, path, payload=None, where=None, not_found=None, retry=None):
        """Call ``/v1/<path>``; returns the JSON body ({} for 204). Reads (GET, LIST) are retried."""
        method = method.upper()
        where = where or "%s %s" % (method, path)
        url = "/v1/" + path.lstrip("/")

        def request():
            if method == "LIST":
                return self.hvac.adapter.request("LIST", url)
            return self.hvac.adapter.request(method, url, json=payload)

        response = self._call(request, where, retry=method in ("GET", "LIST") if retry is None else retry,
                              not_found=not_found)
        return _json(response) if response is not None else {}

    def api_or_none(self, method, path, payload=None, where=None):
        try:
            return self.api(method, path, payload, where)
        except VaultNotFound:
            return None

    # -- health --------------------------------------------------------------------------
    def health(self):
        """``sys/health`` as a dict, whatever the node's state (sealed and standby included)."""
        params = "?standbyok=true&perfstandbyok=true&sealedcode=200&uninitcode=200&drsecondarycode=200"
        response = self._call(
            lambda: self.session.get(
                self.url + "/v1/sys/health" + params,
                verify=self.verify,
                timeout=self.settings["timeout"],
            ),
            "health check",
        )
        return response.json()


def _json(response):
    if isinstance(response, dict):
        return response
    try:
        return response.json()
    except Exception:
        return {}


def _refused(exc):
    if not HAS_HVAC or not isinstance(exc, requests.exceptions.ConnectionError):
        return False
    text = repr(exc).lower()
    return "refused" in text or "newconnectionerror" in text


def _server_errors(exc):
    errors = getattr(exc, "errors", None)
    if isinstance(errors, (list, tuple)):
        return "; ".join(str(e) for e in errors)
    return str(errors or "")


def _tail(detail):
    detail = " ".join(detail.split())
    if not detail:
        return ""
    if len(detail) > 200:
        detail = detail[:197] + "..."
    return ": " + detail


_STATUS = {
    "InvalidRequest": 400,
    "Unauthorized": 401,
    "Forbidden": 403,
    "InvalidPath": 404,
    "PreconditionFailed": 412,
    "RateLimitExceeded": 429,
    "InternalServerError": 500,
    "VaultNotInitialized": 501,
    "BadGateway": 502,
    "VaultDown": 503,
}


# ---------------------------------------------------------------------------------------
# One login per run (penguinmails.vps.vault_session)
# ---------------------------------------------------------------------------------------
SESSION_FACT = "penguinmails_vault_session"
# A session token with less than this many seconds left is not handed out: the caller logs in itself.
SESSION_MARGIN = 120
_SESSION_SETTINGS = ("url", "namespace", "auth_method", "auth_mount", "role_id", "jwt_role")


def session_key(settings):
    """What a session is valid for: the Vault and the login (never a secret)."""
    digest = hashlib.sha256()
    for name in _SESSION_SETTINGS:
        digest.update(("%s=%r\0" % (name, settings.get(name))).encode("utf-8"))
    return digest.hexdigest()[:32]


def session_usable(session, settings, now):
    """True when ``session`` (the fact) holds a token of this login that is still valid for a while."""
    if not session or not session.get("token") or session.get("key") != session_key(settings):
        return False
    expires = session.get("expires")
    return not expires or float(expires) - now > SESSION_MARGIN


def start_session(settings):
    """Log in once (AppRole, JWT) and return the session fact: the token, its accessor, expiry and key.
    Token auth needs no session: ``{}`` (the caller's token is used as it is, and never revoked)."""
    if settings["auth_method"] == "token":
        return {}
    client = VaultClient(settings)
    client.login()
    token = client.hvac.token
    info = client.api("GET", "auth/token/lookup-self", where="lookup of the run's token").get("data") or {}
    ttl = int(info.get("ttl") or 0)
    client.close()
    return dict(token=token, accessor=info.get("accessor") or "", key=session_key(settings), method=settings["auth_method"],
                expires=time.time() + ttl if ttl else 0)


def end_session(session, settings):
    """Revoke the session's token (revoke-self); True when a token was revoked."""
    if not session or not session.get("token"):
        return False
    client = VaultClient(dict(settings, auth_method="token", token=session["token"]))
    client.login()  # token auth: no request, the token goes on the client
    try:
        client.api("POST", "auth/token/revoke-self", where="revocation of the run's token", retry=False)
    except VaultAuthError:
        return False  # already expired or revoked
    finally:
        client.close()
    return True


def session_summary(session):
    """The session without its token (what a task may show)."""
    return dict((name, session.get(name)) for name in ("accessor", "method", "expires") if session)


def controller_vault_options(args, task_vars, session=True):
    """Vault options of a controller-side action plugin: the task's arguments first, then the
    ``penguinmails_vault_<option>`` variables (as the lookup reads them), then (in :func:`resolve_settings`)
    the environment. With ``session``, the run's session token (penguinmails.vps.vault_session, a fact of
    localhost) replaces a login of the same settings."""
    options = {}
    for name in OPTION_SOURCES:
        value = args.get(name)
        if value is None:
            value = task_vars.get("penguinmails_vault_" + name)
        options[name] = value
    if not session or options.get("token"):
        return options
    hostvars = task_vars.get("hostvars") or {}
    try:
        found = (hostvars.get("localhost") or {}).get(SESSION_FACT) or task_vars.get(SESSION_FACT) or {}
    except Exception:  # pylint: disable=broad-except  # hostvars of an inventory without localhost
        found = task_vars.get(SESSION_FACT) or {}
    if not found:
        return options
    try:
        settings = resolve_settings(options)
    except VaultError:
        return options
    if session_usable(found, settings, time.time()):
        options.update(auth_method="token", token=found["token"])
    return options
