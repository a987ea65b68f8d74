# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The read-only SSH credentials view of a tenant (the specification's ``GET .../ssh-credentials``).

Six fields: ``vpsIp``, ``sshUsername``, ``sshPort``, ``keyFingerprint``, ``lastRotated``, ``nextRotation``.
Nothing secret, and nothing is written: viewing never touches ``downloaded_at`` (the one-time download).

Where the fields come from, by what the caller's token may read (asked once with ``sys/capabilities-self``,
so a tenant's view leaves no denied request in Vault's audit log):

* the key's public fields from the custom metadata of ``<mount>/<tenant>/tenant_ssh``
  (module_utils.key_metadata), which the policy ``tenant`` lets a tenant read for its own id only. A KV v2
  read returns every field of a secret, private key included, so the secret itself stays out of a tenant's
  reach. When that metadata is behind the secret (its ``key_version`` is not the current version) a caller
  that may read the secret (admin, automation) reads it instead; a tenant gets the published view marked
  ``stale``;
* the VPS address from the tenant record ``<mount>/<tenant>/record`` when the caller may read it, otherwise
  the copy the record publishes beside the key;
* the user name is the tenant's account on its VPS (validators.tenant_account, as the role ssh_access makes it),
  the port the caller's (the record holds none);
* the next rotation is keypair_store.next_rotation of those fields (the per-tenant spread due date).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, key_metadata
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ssh_key_path,
    tenant_account,
    tenant_record_path,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultNotFound

ROLE = key_metadata.PUBLISHED_ROLE
READ_CAPABILITIES = frozenset(("read", "root"))


class CredentialsError(Exception):
    """No view can be given (no key, nothing published yet for a caller that may not read the secret)."""


def capabilities(client, paths):
    """``{path: [capabilities]}`` of the caller's token (``sys/capabilities-self``)."""
    response = client._call(lambda: client.hvac.sys.get_capabilities(paths=list(paths)),  # pylint: disable=protected-access
                            "capabilities of the token")
    body = (response.get("data") or response) if isinstance(response, dict) else {}
    return dict((path, list(body.get(path) or [])) for path in paths)


def may_read(caps, path):
    return bool(READ_CAPABILITIES.intersection(caps.get(path) or ()))


def _current(meta):
    """The current KV version of the key when it is live (not deleted or destroyed), else 0."""
    current = int(meta.get("current_version") or 0)
    version = (meta.get("versions") or {}).get(str(current)) or {}
    if not current or version.get("deletion_time") or version.get("destroyed"):
        return 0
    return current


def view(client, tenant_id, mount="vps", ssh_port=22):
    """The credentials view of ``tenant_id``: ``{credentials: {six fields}, state, source, stale, key_version, viewer}``.

    ``viewer`` is ``operator`` for a token that may read the secret itself, else ``tenant``.
    """
    tenant_id = validate_tenant_id(tenant_id)
    key_mount, key_path = ssh_key_path(tenant_id, ROLE, mount)
    record_mount, record_path = tenant_record_path(tenant_id, mount)
    key_data, record_data = "%s/data/%s" % (key_mount, key_path), "%s/data/%s" % (record_mount, record_path)
    caps = capabilities(client, [key_data, record_data])
    try:
        meta = client.metadata(key_mount, key_path)
    except VaultNotFound:
        raise CredentialsError("%s has no tenant SSH key (%s/%s)" % (tenant_id, key_mount, key_path))
    current = _current(meta)
    if not current:
        raise CredentialsError("%s has no tenant SSH key (%s/%s was deleted)" % (tenant_id, key_mount, key_path))
    published = meta.get("custom_metadata") or {}
    fields, source, stale = published, "metadata", published.get(key_metadata.VERSION_FIELD) != str(current)
    if stale and may_read(caps, key_data):
        data, version = keypair_store.KeypairStore(client, tenant_id, ROLE, mount=mount).read()
        if data is not None:
            fields, source, stale, current = keypair_store.public_view(data), "secret", False, version
    if not fields.get("fingerprint"):
        raise CredentialsError("the credentials of %s are not published yet: they are with the next write of its key "
                               "(rotation, regeneration, download), or ask an operator" % tenant_id)
    vps_ip = published.get(key_metadata.VPS_IP_FIELD)
    if may_read(caps, record_data):
        record = client.read_or_none(record_mount, record_path)
        vps_ip = (record.data.get("vps_ip") if record else None) or None
    credentials = {
        "vpsIp": vps_ip or None,
        "sshUsername": tenant_account(tenant_id),
        "sshPort": int(ssh_port),
        "keyFingerprint": fields.get("fingerprint"),
        "lastRotated": fields.get("last_rotated") or fields.get("created_at"),
        "nextRotation": keypair_store.next_rotation(fields, tenant_id, ROLE),
    }
    return {"credentials": credentials, "state": fields.get("state") or keypair_store.ACTIVE, "source": source,
            "stale": stale, "key_version": current, "viewer": "operator" if may_read(caps, key_data) else "tenant"}
