# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Vault itself recoverable, in the lab: penguinmails.vps.vault_backup streams Raft snapshots of a real OpenBao
cluster (tests/support/openbao_cluster.py) into restic on the lab's SFTP backup host (tests/lab/backup.py);
vault_health_info reports the last backup and the Raft health from them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile

import pytest

from tests.lab import seed
from tests.lab.backup import backup_host
from tests.support.ansible_run import run_playbook
from tests.support.openbao_cluster import OpenBaoCluster

PLAYBOOK = "penguinmails.vps.vault_backup"
KV_MOUNTS = ("vps", "smtp", "dkim")


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


def pointed_at(lab, cluster, password, token=None):
    """The lab's description with its Vault replaced by ``cluster`` (its active node, the given token) and the
    Vault backup's password in the environment (PENGUINMAILS_VAULT_BACKUP_PASSWORD), as an AWX credential gives it."""
    addr, token = cluster.leader(), token or cluster.token
    return dict(lab, vault=dict(lab["vault"], addr=addr, token=token),
                env=dict(lab["env"], VAULT_ADDR=addr, VAULT_TOKEN=token, PENGUINMAILS_VAULT_BACKUP_PASSWORD=password))


def vault_repository(backup):
    return backup["repository"].replace("{tenant}", "_vault")


def restic(backup, repository, password, *args, check=True):
    env = dict(os.environ, RESTIC_PASSWORD=password)
    return subprocess.run(["restic", "--repo", repository, "--option", "sftp.command=%s" % backup["sftp_command"]]
                          + list(args), capture_output=True, env=env, timeout=300, check=check)


def run_backup(desc, workdir, backup, audit_file, name="run", **extra):
    values = dict(backup["vars"])
    values.update(extra)
    return seed.run_lab_playbook(desc, seed.Tenant(tenant_id="vaultbackup"), os.path.join(workdir, name), PLAYBOOK,
                                 extra_vars=values, audit_file=audit_file)


def vault_events(audit_file, action):
    return [event for event in seed.read_events(audit_file) if event["action"] == action]


def test_vault_backup_streams_raft_snapshots_into_restic_with_retention(lab, workdir):
    backup = backup_host(lab)
    password = secrets.token_urlsafe(24)
    repository = vault_repository(backup)
    audit_file = os.path.join(workdir, "audit.jsonl")
    with OpenBaoCluster(size=1) as cluster:
        cluster.enable_kv(*KV_MOUNTS)
        cluster.api("POST", "/v1/vps/data/tbk/record", {"data": {"domain": "tbk.example.test"}})
        desc = pointed_at(lab, cluster, password)
        tmp_before = set(os.listdir("/tmp"))
        first = run_backup(desc, workdir, backup, audit_file, "one")
        assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
        (done,) = vault_events(audit_file, "vault_backup_completed")
        details = done["details"]
        assert done["status"] == "success" and details["initialised"] is True and details["snapshots"] == 1
        assert details["raft_index"] > 0 and details["vault_version"] and details["bytes"] > 0
        assert "Vault snapshot %s (Raft index %d" % (details["snapshot_id"], details["raft_index"]) in first.stdout
        # Nothing new in /tmp holds a snapshot: the stream went from Vault to restic's stdin.
        for name in set(os.listdir("/tmp")) - tmp_before:
            assert not name.endswith(".snap"), name

        # The repository holds the snapshot as Vault sent it (its SHA-256), a whole Raft snapshot archive;
        # the password is nowhere in the output, the audit or on the backup host.
        dump = restic(backup, repository, password, "dump", "latest", "/vault.snap").stdout
        assert "SHA256:" + hashlib.sha256(dump).hexdigest() == details["sha256"]
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(dump))) as archive:
            assert {"meta.json", "state.bin", "SHA256SUMS"} <= set(archive.getnames())
        with open(audit_file) as handle:
            assert password not in handle.read()
        assert password not in first.stdout + first.stderr
        listing = restic(backup, repository, password, "snapshots", "--json").stdout.decode()
        assert '"hostname":"vault"' in listing and "penguinmails-vault" in listing
        # A wrong password cannot read it.
        assert restic(backup, repository, "not-" + password, "snapshots", check=False).returncode != 0

        # A second run keeping one snapshot forgets the first.
        second = run_backup(desc, workdir, backup, audit_file, "two", vault_backup_keep_last=1,
                            vault_backup_keep_hourly=0, vault_backup_keep_daily=0, vault_backup_keep_weekly=0,
                            vault_backup_keep_monthly=0)
        assert second.returncode == 0, (second.stdout + second.stderr)[-4000:]
        latest = vault_events(audit_file, "vault_backup_completed")[-1]["details"]
        assert latest["removed"] == [details["snapshot_id"]] and latest["snapshots"] == 1 and latest["initialised"] is False

        # The wrong password for the existing repository: audited as critical, the run fails, nothing leaks.
        wrong = "wrong-" + secrets.token_urlsafe(16)
        third = run_backup(pointed_at(lab, cluster, wrong), workdir, backup, audit_file, "three")
        assert third.returncode == 2, (third.stdout + third.stderr)[-4000:]
        assert "vault_backup: Vault was not backed up" in third.stdout, third.stdout[-3000:]
        (failed,) = vault_events(audit_file, "vault_backup_failed")
        assert (failed["status"], failed["severity"], failed["details"]["stage"]) == ("failure", "critical", "snapshot")
        assert wrong not in third.stdout + third.stderr


HEALTH = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Vault's health, its last backup and its Raft state
      penguinmails.vps.vault_health_info:
        backup_repository: %(repository)s
        backup_sftp_command: %(sftp_command)s
      register: health
    - name: Keep the result
      ansible.builtin.copy:
        content: "{{ health.vault_health | to_json }}"
        dest: %(dest)s
        mode: "0600"
"""


def health_of(desc, backup, repository, tmp_path, name):
    dest = os.path.join(str(tmp_path), name + ".json")
    playbook = HEALTH % {"repository": json.dumps(repository), "sftp_command": json.dumps(backup["sftp_command"]),
                         "dest": dest}
    result = run_playbook(playbook, env=dict(desc["env"]), tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    assert desc["env"]["PENGUINMAILS_VAULT_BACKUP_PASSWORD"] not in result.stdout + result.stderr
    with open(dest) as handle:
        return json.load(handle)


def test_vault_health_info_reports_the_last_backup_and_the_raft_health(lab, workdir, tmp_path):
    backup = backup_host(lab)
    password = secrets.token_urlsafe(24)
    repository = vault_repository(backup) + "-health"
    with OpenBaoCluster() as cluster:
        cluster.enable_kv(*KV_MOUNTS)
        desc = pointed_at(lab, cluster, password)
        before = health_of(desc, backup, repository, tmp_path, "before")
        assert before["last_backup"] is None and before["backup_status"] == "none" and before["backup_error"] is None

        audit_file = os.path.join(workdir, "audit.jsonl")
        made = run_backup(desc, workdir, backup, audit_file, vault_backup_repository=repository)
        assert made.returncode == 0, (made.stdout + made.stderr)[-4000:]
        snapshot = vault_events(audit_file, "vault_backup_completed")[-1]["details"]
        health = health_of(desc, backup, repository, tmp_path, "after")
        last = health["last_backup"]
        assert last["id"] == snapshot["snapshot_id"] and last["time"] == snapshot["snapshot_time"]
        assert 0 <= last["age_seconds"] < 3600 and last["raft_index"] == snapshot["raft_index"]
        assert health["backup_status"] == "ok" and health["storage_type"] == "raft"
        raft = health["raft"]
        assert raft["voters"] == ["node1", "node2", "node3"] and raft["leader"] in raft["voters"]
        assert raft["last_index"] >= snapshot["raft_index"]
        assert raft["autopilot"]["healthy"] is True and raft["autopilot"]["failure_tolerance"] == 1
        assert sorted(raft["autopilot"]["servers"]) == ["node1", "node2", "node3"]

        # report.yml shows it, and warns when the last backup is older than the threshold (0 h here).
        report_dir = os.path.join(workdir, "report")
        report = seed.run_lab_playbook(desc, seed.Tenant(tenant_id="vaultbackup"), os.path.join(workdir, "rep"),
                                       "penguinmails.vps.report",
                                       extra_vars=dict(backup["vars"], report_dir=report_dir,
                                                       penguinmails_vault_backup_repository=repository,
                                                       report_vault_backup_max_age_hours=0))
        assert report.returncode == 0, (report.stdout + report.stderr)[-4000:]
        warned = " ".join((report.stdout + report.stderr).split())
        assert "Vault's last backup (%s) is older than 0 h" % snapshot["snapshot_time"] in warned
        assert "Vault's last backup: stale" in warned
        with open(os.path.join(report_dir, "key-health.md")) as handle:
            markdown = handle.read()
        assert "## Vault" in markdown and "Raft: voters node1, node2, node3" in markdown
        assert "Last backup: %s" % snapshot["snapshot_time"] in markdown and "**older than 0 h**" in markdown
        with open(os.path.join(report_dir, "key-health.html")) as handle:
            html = handle.read()
        assert 'id="vault-backup" class="stale"' in html and snapshot["snapshot_id"] in html
        assert password not in markdown + html + report.stdout + report.stderr

        # The wrong password: an error named, not a crash, and never the password.
        wrong = pointed_at(lab, cluster, "wrong-" + password)
        failed = health_of(wrong, backup, repository, tmp_path, "wrong")
        assert failed["backup_status"] == "error" and failed["last_backup"] is None and failed["backup_error"]


RESTORE = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Restore the latest Vault snapshot into the fresh cluster (snapshot-force)
      penguinmails.vps.vault_snapshot:
        state: restored
        force: true
        repository: %(repository)s
        sftp_command: %(sftp_command)s
      register: restored
    - name: Show it
      ansible.builtin.debug:
        msg: "restored {{ restored.snapshot.id }} ({{ restored.bytes }} bytes, RPO {{ restored.rpo_seconds }} s)"
"""


def tenant_state(desc, tenant):
    """What a restore must bring back: every secret and the record of the tenant, by path."""
    client = seed.vault(desc)
    tid = tenant.tenant_id
    paths = [("vps", "%s/admin_ssh" % tid), ("vps", "%s/tenant_ssh" % tid), ("vps", "%s/record" % tid),
             ("smtp", "%s/admin" % tid), ("dkim", "%s/dkim" % tenant["domain"])]
    return dict(("%s/%s" % path, client.read(*path).data) for path in paths)


def test_a_fresh_cluster_restored_from_the_snapshot_brings_every_tenant_back(lab, workdir, tmp_path):
    from tests.integration.test_migrate import assert_migrated  # the migration's promises, checked as test_migrate does

    backup = backup_host(lab)
    password = secrets.token_urlsafe(24)
    repository = vault_repository(backup) + "-restore"
    audit_file = os.path.join(workdir, "audit.jsonl")
    tenants = []
    # Both clusters declare the same audit device (same path): the snapshot carries the audit table, and a cluster
    # whose config declares other options refuses to become active after the restore (docs/vault-recovery.md).
    audit_log = os.path.join(workdir, "vault-audit.log")
    old = OpenBaoCluster(audit_log=audit_log).__enter__()
    try:
        old.enable_kv(*KV_MOUNTS)
        desc_old = type(lab)(pointed_at(lab, old, password))
        for _unused in range(2):
            tenant = seed.seed_tenant(desc_old)
            tenant["seed_password"] = seed.vault(desc_old).read("smtp", "%s/admin" % tenant.tenant_id).data["password"]
            tenants.append(tenant)
        rotated, moved = tenants
        snap = run_backup(desc_old, workdir, backup, audit_file, "snap", vault_backup_repository=repository)
        assert snap.returncode == 0, (snap.stdout + snap.stderr)[-4000:]
        at_snapshot = dict((t.tenant_id, tenant_state(desc_old, t)) for t in tenants)
        # After the snapshot, a forced rotation of one tenant on the old cluster: its host gets a newer key the
        # snapshot does not hold (the old one stays, in its grace, with expiry-time).
        host = {"name": rotated["old_vps"]["name"], "ip": rotated["old_vps"]["ip"]}
        later = seed.run_lab_playbook(desc_old, rotated, os.path.join(workdir, "rotate-old"), "penguinmails.vps.rotate",
                                      extra_vars={"force": True}, audit_file=audit_file, hosts=[host])
        assert later.returncode == 0, (later.stdout + later.stderr)[-4000:]
        lost_key = seed.vault(desc_old).read("vps", "%s/admin_ssh" % rotated.tenant_id).data
        assert lost_key["public_key"] != at_snapshot[rotated.tenant_id]["vps/%s/admin_ssh" % rotated.tenant_id]["public_key"]
        old_token, old_unseal_key = old.token, old.unseal_key
    finally:
        old.__exit__(None, None, None)  # the whole cluster destroyed: processes killed, data directories removed

    try:
        with OpenBaoCluster(audit_log=audit_log) as fresh:
            # The restore, with the fresh cluster's own root token; the cluster then holds the snapshot's keyring: it
            # is sealed, unsealed with the old cluster's key, and the old cluster's tokens work again.
            playbook = RESTORE % {"repository": json.dumps(repository), "sftp_command": json.dumps(backup["sftp_command"])}
            env = dict(lab["env"], VAULT_ADDR=fresh.leader(), VAULT_TOKEN=fresh.token, PENGUINMAILS_VAULT_BACKUP_PASSWORD=password)
            restored = run_playbook(playbook, env=env, tmp_path=tmp_path)
            assert restored.returncode == 0, restored.stdout[-3000:]
            assert "restored %s" % vault_events(audit_file, "vault_backup_completed")[-1]["details"]["snapshot_id"] in restored.stdout
            fresh.unseal_key, fresh.token = old_unseal_key, old_token
            for node in fresh.nodes:
                fresh._unseal(node)
            wait_for_leader(fresh)
            desc = type(lab)(pointed_at(lab, fresh, password))

            # Every tenant back, exactly as at the snapshot: keys, record, SMTP admin, DKIM.
            for tenant in tenants:
                assert tenant_state(desc, tenant) == at_snapshot[tenant.tenant_id]
            # The older key the snapshot holds still logs in: the host keeps it through its grace (expiry-time).
            restored_key = seed.vault(desc).read("vps", "%s/admin_ssh" % rotated.tenant_id).data
            login = seed.ssh_with_key(restored_key["private_key"], rotated["old_vps"]["ip"], "id -u", workdir)
            assert login.returncode == 0 and login.stdout.strip() == "0", login.stderr

            # The hosts hold serials (KV versions) the restored Vault lost: vault_restored carries the records past them
            # (unchanged data), else the host would refuse the next rotation's keys as older than its own.
            reconcile = seed.run_lab_playbook(desc, seed.Tenant(tenant_id=""), os.path.join(workdir, "reconcile"),
                                              "penguinmails.vps.vault_restored", extra_vars={"all_tenants": True},
                                              audit_file=audit_file)
            assert reconcile.returncode == 0, (reconcile.stdout + reconcile.stderr)[-4000:]
            reconciled = dict((event["tenantId"], event) for event in vault_events(audit_file, "vault_restore_reconciled"))
            assert reconciled[rotated.tenant_id]["status"] == "success" and reconciled[rotated.tenant_id]["details"]["writes"] > 0
            roles = reconciled[rotated.tenant_id]["details"]["roles"]
            assert roles["admin"]["host_serial"] > roles["admin"]["version_before"]
            assert roles["admin"]["version_after"] == roles["admin"]["host_serial"]
            assert reconciled[moved.tenant_id]["details"]["writes"] == 0  # nothing written after the snapshot
            for tenant in tenants:  # the keys are unchanged: only their versions moved (the record gained the host keys
                state = tenant_state(desc, tenant)  # ssh_agent recorded at first contact)
                record = "vps/%s/record" % tenant.tenant_id
                assert dict(state, **{record: None}) == dict(at_snapshot[tenant.tenant_id], **{record: None})
                assert at_snapshot[tenant.tenant_id][record].items() <= state[record].items()

            # A rotation from the restored cluster works (it logs in with the restored key, installs a new one).
            rotation = seed.run_lab_playbook(desc, rotated, os.path.join(workdir, "rotate-new"), "penguinmails.vps.rotate",
                                             extra_vars={"force": True}, audit_file=audit_file, hosts=[host])
            assert rotation.returncode == 0, (rotation.stdout + rotation.stderr)[-4000:]
            current = seed.vault(desc).read("vps", "%s/admin_ssh" % rotated.tenant_id).data
            assert current["public_key"] not in (restored_key["public_key"], lost_key["public_key"])
            assert seed.ssh_admin(desc, rotated.tenant_id, rotated["old_vps"]["ip"], "id -u", workdir).returncode == 0

            # A migration of the other tenant from the restored cluster: every promise of a completed migration.
            migration = seed.run_migrate(desc, moved, os.path.join(workdir, "migrate"), reason="upgrade", audit_file=audit_file)
            assert migration.returncode == 0, (migration.stdout + migration.stderr)[-4000:]
            assert_migrated(desc, moved, workdir)
            assert password not in restored.stdout + rotation.stdout + migration.stdout
    finally:
        for tenant in tenants:
            for item in seed.instances(lab):
                if item["srvrname"].startswith("pm-%s-" % tenant.tenant_id):
                    seed.hostwinds(lab, "terminate", serviceid=item["serviceid"])


def wait_for_leader(cluster):
    """The restored cluster elects a leader that answers with the old cluster's token."""
    from tests.support.wait import wait_until

    def ready():
        address = cluster.leader()
        return address and cluster.request(address, "GET", "/v1/vps/metadata/?list=true")[0] in (200, 404)

    wait_until(ready, 60, "the restored cluster to elect a leader that knows the old token")
