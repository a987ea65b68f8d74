# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_ssh_keypair and vault_ssh_key_download, run by ansible-playbook against a real OpenBao."""
from __future__ import annotations

import datetime
import itertools
import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid


from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from tests.support.ansible_run import REPO, ansible_env, ensure_collection_link, run_tasks

_ids = itertools.count()
OUTPUTS = []  # every stdout/stderr of this module's runs: checked for private keys at the end


def tenant():
    return "it%s%02d" % (uuid.uuid4().hex[:6], next(_ids))


def play(server, tasks, tmp_path, args=(), expect_rc=0):
    """Run ``tasks`` on localhost; every registered variable named r_* is returned."""
    results, result = run_tasks(tasks, tmp_path, env=server.env(), args=args)
    OUTPUTS.append(result.stdout + result.stderr)
    assert result.returncode == expect_rc, result.stdout[-4000:] + result.stderr[-2000:]
    return results, result


def versions(server, tid, role="tenant"):
    status, body = server.request("GET", "/v1/vps/metadata/%s/%s_ssh" % (tid, role))
    return body["data"]["current_version"] if status == 200 else 0


def seed_key(server, tid, role="tenant", age_days=100):
    pair = ssh_keys.generate_keypair("ed25519")
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=age_days)).strftime("%Y-%m-%dT%H:%M:%SZ")
    server.kv_put("vps", "%s/%s_ssh" % (tid, role), {
        "private_key": pair.private_key, "public_key": pair.public_key, "fingerprint": pair.fingerprint,
        "key_type": "ed25519", "created_at": old, "last_rotated": old, "rotation_policy": "90_days", "state": "active",
    })
    return pair


def test_create_idempotent_check_mode_and_bad_input(openbao, tmp_path):
    a, b = tenant(), tenant()
    res, _unused = play(openbao, """
        - name: Check mode on a new key
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin}
          check_mode: true
          register: r_check
        - name: Create (RSA 4096 by default)
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin}
          register: r_create
        - name: Again
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin}
          register: r_again
        - name: Bad tenant id
          penguinmails.vps.vault_ssh_keypair: {tenant_id: "../%s", role: admin}
          register: r_bad
          ignore_errors: true
        - name: Private key without no_log
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin, return_private_key: true}
          register: r_noisy
          ignore_errors: true
        - name: Private key with no_log
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin, return_private_key: true}
          register: r_quiet
          no_log: true
    """ % (a, b, b, b, b, b), tmp_path)
    assert res["r_check"]["changed"] and res["r_check"]["action"] == "created" and res["r_check"]["version"] is None
    assert versions(openbao, a, "admin") == 0  # check mode wrote nothing
    create = res["r_create"]
    assert create["changed"] and create["version"] == 1 and create["key_type"] == "rsa" and not create["rotated"]
    assert "private_key" not in create
    stored = openbao.kv_get("vps", "%s/admin_ssh" % b)["data"]
    assert stored["public_key"] == create["public_key"] and stored["fingerprint"] == create["fingerprint"]
    key_file = tmp_path / "id"
    key_file.write_text(stored["private_key"])
    key_file.chmod(0o600)
    line = subprocess.run(["ssh-keygen", "-lf", str(key_file)], capture_output=True, text=True, check=True).stdout
    assert line.startswith("4096 %s " % create["fingerprint"])
    assert set(stored) >= {"private_key", "public_key", "fingerprint", "key_type", "created_at", "last_rotated",
                           "rotation_policy", "state"}
    assert stored["rotation_policy"] == "90_days" and stored["state"] == "active"
    assert res["r_again"]["changed"] is False and res["r_again"]["version"] == 1
    assert res["r_bad"]["failed"] and res["r_bad"]["msg"].startswith("invalid tenant id '../")
    assert "needs no_log: true" in res["r_noisy"]["msg"]
    assert res["r_quiet"]["private_key"] == stored["private_key"]
    assert versions(openbao, b, "admin") == 1


def test_rotate_due_not_due_force_revoke_regenerate_absent(openbao, tmp_path):
    tid = tenant()
    old = seed_key(openbao, tid)
    res, run = play(openbao, """
        - name: Check mode rotation
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: rotated, key_type: ed25519}
          check_mode: true
          register: r_check
        - name: Due
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: rotated, key_type: ed25519}
          register: r_due
        - name: Not due
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: rotated, key_type: ed25519}
          register: r_not_due
        - name: Forced, short grace, with diff
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: rotated, key_type: ed25519, force: true, grace_hours: 1}
          diff: true
          register: r_force
        - name: Revoke (check mode)
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: revoked}
          check_mode: true
          register: r_revoke_check
        - name: Revoke
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: revoked}
          register: r_revoke
        - name: Revoke again
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: revoked}
          register: r_revoke_again
        - name: A revoked key is not rotated
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: rotated, force: true}
          register: r_rotate_revoked
        - name: Regenerate
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: regenerated, key_type: ed25519}
          register: r_regen
        - name: Absent
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: absent}
          register: r_absent
        - name: Absent again
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: absent}
          register: r_absent_again
    """ % {"t": tid}, tmp_path, args=("-vvv",))
    assert res["r_check"]["changed"] and res["r_check"]["action"] == "rotated" and res["r_check"]["version"] is None
    due = res["r_due"]
    assert due["changed"] and due["rotated"] and due["version"] == 2
    assert due["grace_public_key"] == old.public_key and due["fingerprint"] != old.fingerprint
    assert due["key_type"] == "ed25519"
    until = datetime.datetime.strptime(due["grace_until"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    delta = until - datetime.datetime.now(datetime.timezone.utc)
    assert datetime.timedelta(hours=23) < delta <= datetime.timedelta(hours=24)
    assert due["grace_expiry_time"] == (until + datetime.timedelta(seconds=59)).strftime("%Y%m%d%H%MZ")
    assert res["r_not_due"]["changed"] is False and res["r_not_due"]["msg"] == "not due"
    force = res["r_force"]
    assert force["changed"] and force["version"] == 3 and force["grace_public_key"] == due["public_key"]
    assert due["fingerprint"] in run.stdout and force["fingerprint"] in run.stdout  # the diff
    assert res["r_revoke_check"]["changed"] and versions(openbao, tid) >= 4
    revoke = res["r_revoke"]
    assert revoke["changed"] and revoke["key_state"] == "revoked"
    # the current key and every grace key: the first key too, still in its own grace after two rotations
    assert revoke["revoked_public_keys"] == [force["public_key"], due["public_key"], old.public_key]
    assert res["r_revoke_again"]["changed"] is False
    assert res["r_rotate_revoked"]["changed"] is False and "revoked" in res["r_rotate_revoked"]["msg"]
    regen = res["r_regen"]
    assert regen["changed"] and regen["key_state"] == "active" and "grace_public_key" not in regen
    assert res["r_absent"]["changed"] and res["r_absent_again"]["changed"] is False
    # Soft delete: the latest version is gone, the history is all there (nothing lost).
    status, _unused = openbao.request("GET", "/v1/vps/data/%s/tenant_ssh" % tid)
    assert status == 404
    history = [openbao.kv_get("vps", "%s/tenant_ssh" % tid, version=v)["data"] for v in range(1, 5)]
    assert history[0]["private_key"] == old.private_key
    assert history[3]["state"] == "revoked" and "private_key" not in history[3]
    assert [h["fingerprint"] for h in history[:3]] == [old.fingerprint, due["fingerprint"], force["fingerprint"]]


def test_download_once_then_refused_until_regenerate(openbao, tmp_path):
    tid = "dl" + uuid.uuid4().hex  # longer than 8 characters: the login uses the first 8
    openbao.kv_put("vps", "%s/record" % tid, {"vps_ip": "192.0.2.44"})
    keyfile = tmp_path / "tenant.key"
    res, _unused = play(openbao, """
        - name: Create
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, key_type: ed25519}
          register: r_create
        - name: Check mode download
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s}
          check_mode: true
          register: r_dl_check
        - name: Download as a wrapping token
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s, wrap_ttl: 10m}
          register: r_dl
        - name: Second download
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s}
          register: r_dl_again
          ignore_errors: true
        - name: Regenerate
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: regenerated, key_type: ed25519}
          register: r_regen
        - name: Download as a file
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s, output: file, dest: "%(f)s"}
          register: r_file
        - name: File mode needs dest
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s, output: file}
          register: r_nodest
          ignore_errors: true
    """ % {"t": tid, "f": keyfile}, tmp_path)
    check = res["r_dl_check"]
    assert check["changed"] and check["downloaded_at"] is None and "wrap_token" not in check
    dl = res["r_dl"]
    user = tenant_account(tid)
    assert dl["ssh_user"] == user and dl["host"] == "192.0.2.44"
    assert dl["instructions"] == "ssh -i %s.key %s@192.0.2.44 -p 22" % (user, user)
    assert dl["version"] == 2 and dl["downloaded_at"] and dl["wrap_ttl"] == 600
    assert dl["wrap_creation_path"] == "vps/data/%s/tenant_ssh" % tid
    # The token unwraps once, to the key stored in Vault (a wrapped KV v2 read: the secret is under data.data).
    unwrapped = openbao.api("POST", "/v1/sys/wrapping/unwrap", token=dl["wrap_token"])["data"]["data"]
    assert unwrapped["private_key"] == openbao.kv_get("vps", "%s/tenant_ssh" % tid, version=1)["data"]["private_key"]
    assert unwrapped["fingerprint"] == res["r_create"]["fingerprint"]
    status, _unused = openbao.request("POST", "/v1/sys/wrapping/unwrap", token=dl["wrap_token"])
    assert status in (400, 403)
    again = res["r_dl_again"]
    assert again["failed"] and "already downloaded at %s: regenerate it" % dl["downloaded_at"] in again["msg"]
    filed = res["r_file"]
    assert filed["dest"] == str(keyfile) and filed["instructions"] == "ssh -i %s %s@192.0.2.44 -p 22" % (keyfile, user)
    assert stat.S_IMODE(os.stat(keyfile).st_mode) == 0o600
    latest = openbao.kv_get("vps", "%s/tenant_ssh" % tid)["data"]
    assert keyfile.read_text() == latest["private_key"] and latest["downloaded_at"] == filed["downloaded_at"]
    assert res["r_nodest"]["failed"] and "dest" in res["r_nodest"]["msg"]


def test_download_token_to_file_and_revoked_refused(openbao, tmp_path):
    tid = tenant()
    token_file = tmp_path / "handover.token"
    res, run = play(openbao, """
        - name: Create
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, key_type: ed25519}
        - name: Token to a file
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s, dest: "%(f)s"}
          register: r_dl
        - name: Revoke
          penguinmails.vps.vault_ssh_keypair: {tenant_id: %(t)s, role: tenant, state: revoked}
        - name: Regenerate is needed after a revoke
          penguinmails.vps.vault_ssh_key_download: {tenant_id: %(t)s}
          register: r_revoked
          ignore_errors: true
    """ % {"t": tid, "f": token_file}, tmp_path)
    assert "wrap_token" not in res["r_dl"] and stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    token = token_file.read_text().strip()
    assert token not in run.stdout
    assert openbao.api("POST", "/v1/sys/wrapping/unwrap", token=token)["data"]["data"]["private_key"].startswith("-----BEGIN OPENSSH")
    assert "is revoked: regenerate it" in res["r_revoked"]["msg"]
    user = tenant_account(tid)
    assert res["r_dl"]["instructions"] == "ssh -i %s.key %s@<vps ip> -p 22" % (user, user)
    assert res["r_dl"]["wrap_ttl"] == 3600  # the default: one hour at most


def test_two_concurrent_rotations_exactly_one_wins(openbao, tmp_path):
    tid = tenant()
    seed_key(openbao, tid, "admin")
    ensure_collection_link()
    playbook = tmp_path / "rotate.yml"
    playbook.write_text(textwrap.dedent("""
        - hosts: localhost
          gather_facts: false
          tasks:
            - name: Rotate when due (RSA is slow enough for both runs to read the same version)
              penguinmails.vps.vault_ssh_keypair: {tenant_id: %s, role: admin, state: rotated}
              register: r
            - name: Report
              ansible.builtin.copy: {content: "{{ r | to_json }}", dest: "{{ out }}", mode: "0600"}
    """ % tid))
    inventory = tmp_path / "inv.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    procs, outs = [], []
    for n in range(2):
        out = tmp_path / ("race-%d.json" % n)
        outs.append(out)
        cmd = [os.path.join(os.path.dirname(sys.executable), "ansible-playbook"), "-i", str(inventory), str(playbook),
               "-e", "out=%s" % out]
        procs.append(subprocess.Popen(cmd, env=ansible_env(openbao.env()), cwd=REPO, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    results = []
    for proc, out in zip(procs, outs):
        stdout, stderr = proc.communicate(timeout=300)
        OUTPUTS.append(stdout + stderr)
        results.append((proc.returncode, json.loads(out.read_text()) if out.exists() else None, stdout + stderr))
    winners = [r for r in results if r[0] == 0 and r[1]["changed"]]
    assert len(winners) == 1, results
    loser = [r for r in results if r is not winners[0]][0]
    if loser[0] == 0:  # it read after the winner wrote: the key was no longer due
        assert loser[1]["changed"] is False and loser[1]["msg"] == "not due"
    else:
        assert "check-and-set conflict on write of vps/%s/admin_ssh" % tid in loser[2]
    assert versions(openbao, tid, "admin") == 2
    stored = openbao.kv_get("vps", "%s/admin_ssh" % tid)["data"]
    assert stored["public_key"] == winners[0][1]["public_key"]


def test_no_private_key_in_any_output(openbao):
    """Runs last in this file: every stored private key of every version is absent from all runs' output."""
    assert OUTPUTS, "the other tests of this file produced no output"
    text = "\n".join(OUTPUTS)
    assert "PRIVATE KEY-----" not in text
    for tid in openbao.api("LIST", "/v1/vps/metadata")["data"]["keys"]:
        tid = tid.rstrip("/")
        for role in ("admin", "tenant"):
            status, meta = openbao.request("GET", "/v1/vps/metadata/%s/%s_ssh" % (tid, role))
            if status != 200:
                continue
            for version in meta["data"]["versions"]:
                status, body = openbao.request("GET", "/v1/vps/data/%s/%s_ssh?version=%s" % (tid, role, version))
                key = (body.get("data") or {}).get("data") or {}
                if key.get("private_key"):
                    body_lines = key["private_key"].strip().splitlines()[1:-1]
                    assert not any(line in text for line in body_lines if len(line) > 20)
