# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The public fields of a tenant's SSH key, published in the KV v2 custom metadata of its secret.

A KV v2 read returns every field of a secret, so a policy cannot let a tenant read the fingerprint of
``<vps mount>/<tenant>/tenant_ssh`` without its private key. The policy ``tenant`` grants a tenant only the
*metadata* of that one secret (``<vps mount>/metadata/<its id>/tenant_ssh``); so every writer of the key
also merges its public fields into that metadata's ``custom_metadata`` (:func:`publish_key`, a JSON merge
patch that can change nothing else: the policy ``automation`` may patch ``custom_metadata`` and no other
parameter, so never the retention), and the tenant record publishes the VPS address there
(:func:`publish_vps_ip`). ``key_version`` names the KV version the key fields describe: a reader that
finds another current version knows the published view is behind (a publish that failed, or a key
written before this existed). Nothing secret is ever published.

Publishing never fails the write it follows: the key is in Vault either way, and the credentials view
(module_utils.ssh_credentials) reports a view that is behind.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ssh_key_path, validate_mount
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultError

# The key's public fields published (custom metadata values are strings of at most 512 bytes).
KEY_FIELDS = ("fingerprint", "key_type", "created_at", "last_rotated", "rotation_policy", "state", "revoked_at")
VERSION_FIELD = "key_version"
VPS_IP_FIELD = "vps_ip"
PUBLISHED_FIELDS = KEY_FIELDS + (VERSION_FIELD, VPS_IP_FIELD)
# Only the tenant key is published: nobody but the admin policy reads the admin key's metadata anyway.
PUBLISHED_ROLE = "tenant"
_MAX_VALUE = 512


def key_fields(data, version):
    """The custom metadata of a key record ``data`` at KV ``version``; a field the record lacks is removed (None)."""
    fields = dict((name, None) for name in KEY_FIELDS)
    for name in KEY_FIELDS:
        value = (data or {}).get(name)
        if value not in (None, ""):
            fields[name] = str(value)[:_MAX_VALUE]
    fields[VERSION_FIELD] = str(version) if version else None
    return fields


def patch(client, mount, path, fields):
    """Merge ``fields`` into the custom metadata of ``mount/path`` (None removes a field).

    Returns True when Vault took it, False when it refused (no such secret yet, a token without the
    right); never raises a VaultError.
    """
    validate_mount(mount)
    if getattr(client, "hvac", None) is None:
        return False  # a client without Vault's HTTP API (an in-memory stand-in) has no metadata to patch

    def call():
        return client.hvac.adapter.request("PATCH", "/v1/%s/metadata/%s" % (mount, path), json={"custom_metadata": fields},
                                           headers={"Content-Type": "application/merge-patch+json"})

    try:
        client._call(call, "custom metadata of %s/%s" % (mount, path))  # pylint: disable=protected-access
    except VaultError:
        return False
    return True


def publish_key(client, mount, tenant_id, role, data, version, vps_ip=None):
    """Publish the public fields of the tenant key ``data`` (KV ``version``); other roles publish nothing (None)."""
    if role != PUBLISHED_ROLE or not version:
        return None
    fields = key_fields(data, version)
    if vps_ip:
        fields[VPS_IP_FIELD] = str(vps_ip)[:_MAX_VALUE]
    return patch(client, *ssh_key_path(tenant_id, role, mount), fields=fields)


def publish_vps_ip(client, mount, tenant_id, vps_ip):
    """Publish the tenant's VPS address beside its key (False while the tenant has no key yet)."""
    return patch(client, *ssh_key_path(tenant_id, PUBLISHED_ROLE, mount), fields={VPS_IP_FIELD: str(vps_ip)[:_MAX_VALUE] if vps_ip else None})
