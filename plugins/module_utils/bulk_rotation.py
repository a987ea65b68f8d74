# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Rotate the SSH keys of many tenants at the speed of the machine.

Key generation (RSA-4096: about 0.3 s of one core per key) is CPU-bound, so it runs in a pool
of processes, one per core. Vault I/O is pipelined around it on threads: every secret is read
ahead, and each new key is written (check-and-set on the version that was read) as soon as its
process returns it, while the other cores keep generating. The wall time then approaches
``keys x single-key time / cores``.

Each key goes through :class:`keypair_store.KeypairStore`'s record functions, so a bulk
rotation stores exactly what a single ``vault_ssh_keypair state=rotated`` would: the previous
public key joins the grace keys (each superseded key keeps its own grace), history stays in KV,
and due dates are spread the same way (:func:`keypair_store.is_due` with the tenant and role).
A concurrent run that replaced a key first makes that key ``skipped`` (``rotated concurrently``,
with the key that stands and one line saying so); any other concurrent writer makes that tenant
fail with a clear check-and-set error instead of losing a key.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import multiprocessing
import os
import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys, tenant_download
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import (
    ValidationError,
    validate_role,
    validate_tenant_id,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_client import VaultCASConflict, VaultError

IO_THREADS = 8


def _generate(job):
    """Runs in a worker process: one key pair as plain strings (cheap to send back)."""
    key_type, bits, comment = job
    pair = ssh_keys.generate_keypair(key_type, bits=bits, comment=comment)
    return pair.key_type, pair.private_key, pair.public_key, pair.fingerprint


def list_tenants(client, mount="vps"):
    """Every tenant id that has a folder under the mount (invalid names are reported, not used)."""
    tenants, invalid = [], []
    for key in client.list(mount, ""):
        name = key.rstrip("/")
        try:
            tenants.append(validate_tenant_id(name))
        except ValidationError:
            invalid.append(name)
    return tenants, invalid


def tenants_at(client, tenants, addresses, mount="vps"):
    """The tenants of ``tenants`` whose host (``vps_ip`` of ``<mount>/<tenant>/record``) is one of ``addresses``.

    What one slice of a sliced job (AWX/AAP job slicing) owns: its inventory's hosts are ``addresses``, so each
    tenant belongs to exactly one slice, the one that holds its host. Records are read concurrently. Returns
    ``(owned, failures)``: a tenant without a record has no host and belongs to no slice; a record that cannot
    be read is a failure (``role`` ``record``), since no slice can tell whether the tenant is its own.
    """
    wanted = set(address.strip() for address in addresses if address and address.strip())
    owned, failures = [], []

    def vps_ip(tenant):
        secret = client.read_or_none(mount, "%s/record" % tenant)
        return ((secret.data if secret else None) or {}).get("vps_ip")

    if not wanted or not tenants:
        return owned, failures
    with ThreadPoolExecutor(max_workers=IO_THREADS) as io:
        reads = dict((io.submit(vps_ip, tenant), tenant) for tenant in tenants)
        for future in as_completed(reads):
            tenant = reads[future]
            try:
                address = future.result()
            except VaultError as exc:
                failures.append({"tenant_id": tenant, "role": "record", "error": str(exc)})
                continue
            if address and str(address).strip() in wanted:
                owned.append(tenant)
    return sorted(owned), sorted(failures, key=lambda item: item["tenant_id"])


def _pool(workers):
    # fork: the children inherit the loaded module_utils (also inside an AnsiballZ payload).
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else None
    return multiprocessing.get_context(method).Pool(processes=workers)


def rotate_many(client, tenants, roles=("admin", "tenant"), mount="vps", key_type=None, bits=None, rotation_days=90,
                grace_hours=24, force=False, workers=None, check_mode=False, clock=None, tenant_download_offer=False):
    """Rotate every due key of ``tenants`` x ``roles``.

    A key is due at its last rotation + ``rotation_days`` - its tenant's offset (see
    :func:`keypair_store.due_offset_days`), never later.

    Returns a dict: ``rotated`` (list of {tenant_id, role, fingerprint, version, next_rotation}),
    ``skipped`` ({tenant_id, role, reason}: not due, revoked, no key, or ``rotated concurrently`` -
    another run replaced the key first; its entry also has the ``fingerprint`` that stands and a
    one-line ``message``), ``failures`` (list of {tenant_id, role, error}), ``timings``. A failure of
    one tenant never stops the others. ``key_type`` None keeps each key's own type. (Not ``failed``:
    Ansible reserves that key.)

    With ``tenant_download_offer``, each rotated tenant key is offered to its tenant for a self-service download
    (:func:`tenant_download.make_offer`); its ``rotated`` entry then has ``download_offer_expires_at``, and an offer
    that could not be made is listed in ``download_offer_errors`` (one line each; the rotation stands).
    """
    roles = [validate_role(role) for role in roles]
    stores = [keypair_store.KeypairStore(client, tenant, role, mount=mount) for tenant in tenants for role in roles]
    clock = clock or keypair_store.utcnow
    workers = max(1, int(workers or os.cpu_count() or 1))
    result = {"rotated": [], "skipped": [], "failures": [], "unconfirmed": [], "timings": {}, "download_offer_errors": []}
    started = time.monotonic()

    def fail(store, error):
        result["failures"].append({"tenant_id": store.tenant_id, "role": store.role, "error": str(error)})

    # 1. Read everything ahead, concurrently.
    due = []
    with ThreadPoolExecutor(max_workers=IO_THREADS) as io:
        reads = dict((io.submit(store.read), store) for store in stores)
        for future in as_completed(reads):
            store = reads[future]
            try:
                data, version = future.result()
            except VaultError as exc:
                fail(store, exc)
                continue
            now = clock()
            if data is None:
                result["skipped"].append({"tenant_id": store.tenant_id, "role": store.role, "reason": "no key"})
            elif data.get("state") == keypair_store.REVOKED:
                result["skipped"].append({"tenant_id": store.tenant_id, "role": store.role, "reason": "revoked"})
            elif force or keypair_store.is_due(data, rotation_days, now, tenant_id=store.tenant_id, role=store.role):
                due.append((store, data, version))
            else:
                result["skipped"].append({"tenant_id": store.tenant_id, "role": store.role, "reason": "not due"})
                if not keypair_store.is_confirmed(data):
                    result["unconfirmed"].append({"tenant_id": store.tenant_id, "role": store.role})
    result["timings"]["read_s"] = round(time.monotonic() - started, 3)
    if check_mode or not due:
        result["would_rotate"] = [{"tenant_id": s.tenant_id, "role": s.role} for s, _d, _v in due]
        result["unconfirmed"].sort(key=lambda item: (item["tenant_id"], item["role"]))
        result["timings"]["total_s"] = round(time.monotonic() - started, 3)
        return result

    # 2. Generate on every core; 3. write each key as soon as it exists.
    def write(store, data, version, generated):
        key_type_, private_key, public_key, fingerprint = generated
        pair = ssh_keys.KeyPair(key_type_, private_key, public_key, fingerprint)
        record = keypair_store.record_rotated(data, pair, clock(), rotation_days, grace_hours, role=store.role)
        try:
            written = client.write(store.mount, store.path, record, cas=version)
        except VaultCASConflict:
            current, current_version = store.read()
            if current is not None and current.get("fingerprint") == fingerprint:
                return current_version, record  # this write landed (the client retried it after a failover)
            if current is not None and current.get("fingerprint") not in (None, data.get("fingerprint")):
                return None, current  # another run rotated it: its key stands
            raise
        store.publish(record, written)
        if tenant_download_offer and store.role == "tenant":
            try:
                offer = tenant_download.make_offer(client, store.tenant_id, record, written,
                                                   tenant_download.offer_hours(grace_hours), mount=store.vps_mount)
                record = dict(record, download_offer_expires_at=offer["expires_at"])
            except VaultError as exc:
                result["download_offer_errors"].append("%s: no self-service download offered (%s)" % (store.tenant_id, exc))
        return written, record

    def own_type(data):
        return data.get("key_type") if data.get("key_type") in ssh_keys.KEY_TYPES else "rsa"

    jobs = [(key_type or own_type(data), bits, store.comment()) for store, data, _version in due]
    keygen_started = time.monotonic()
    pool = _pool(workers)
    try:
        with ThreadPoolExecutor(max_workers=IO_THREADS) as io:
            writes = {}
            for index, generated in pool.imap_unordered(_indexed_generate, list(enumerate(jobs))):
                store, data, version = due[index]
                writes[io.submit(write, store, data, version, generated)] = store
            result["timings"]["keygen_s"] = round(time.monotonic() - keygen_started, 3)
            for future in as_completed(writes):
                store = writes[future]
                try:
                    version, record = future.result()
                except VaultError as exc:
                    fail(store, exc)
                    continue
                result["unconfirmed"].append({"tenant_id": store.tenant_id, "role": store.role})
                if version is None:
                    standing = record.get("fingerprint")
                    result["skipped"].append({"tenant_id": store.tenant_id, "role": store.role, "reason": "rotated concurrently",
                                              "fingerprint": standing,
                                              "message": keypair_store.race_message(store.tenant_id, store.role, standing)})
                    continue
                entry = {"tenant_id": store.tenant_id, "role": store.role, "fingerprint": record["fingerprint"],
                         "version": version, "next_rotation": store.next_rotation(record, rotation_days)}
                if record.get("download_offer_expires_at"):
                    entry["download_offer_expires_at"] = record["download_offer_expires_at"]
                result["rotated"].append(entry)
    finally:
        pool.close()
        pool.join()
    result["timings"]["total_s"] = round(time.monotonic() - started, 3)
    for key in ("rotated", "skipped", "failures", "unconfirmed"):
        result[key].sort(key=lambda item: (item["tenant_id"], item["role"]))
    return result


def host_updates(result, roles):
    """The host jobs of a bulk rotation: every tenant with a key its host has not confirmed.

    ``[{tenant_id, roles, rotated_roles}]``, ``rotated_roles`` being the roles rotated in this run (the format
    of the playbooks' ``ssh_lifecycle_jobs``).
    """
    tenants = sorted(set(item["tenant_id"] for item in result["unconfirmed"]))
    rotated = {}
    for item in result["rotated"]:
        rotated.setdefault(item["tenant_id"], []).append(item["role"])
    return [{"tenant_id": tenant, "roles": list(roles), "rotated_roles": sorted(rotated.get(tenant, []))} for tenant in tenants]


def _indexed_generate(indexed_job):
    index, job = indexed_job
    return index, _generate(job)
