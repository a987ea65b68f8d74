# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_smtp_credentials through ansible-playbook against a real OpenBao."""
from __future__ import annotations

import threading
import uuid

from ansible_collections.penguinmails.vps.plugins.module_utils import smtp_credentials, timeutil
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ansible_run import run_tasks


def tenant():
    return "smtp" + uuid.uuid4().hex[:8]


def metadata_versions(server, tid):
    status, body = server.request("GET", "/v1/smtp/metadata/%s/admin" % tid)
    return body["data"]["current_version"] if status == 200 else 0


def test_create_rotate_idempotent_check_and_diff(openbao, tmp_path):
    tid = tenant()
    results, run = run_tasks("""
        - name: Check mode on missing credentials
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %(t)s, username: admin@%(t)s.test}
          check_mode: true
          register: r_check
        - name: Create
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %(t)s, username: admin@%(t)s.test, webmail_url: "https://m/"}
          register: r_create
        - name: Again, not due
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %(t)s, state: rotated}
          register: r_not_due
        - name: Forced rotation, diff mode
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %(t)s, state: rotated, force: true}
          diff: true
          register: r_forced
    """ % {"t": tid}, tmp_path, env=openbao.env(), args=["--diff"])
    assert run.returncode == 0, run.stdout[-3000:]
    assert results["r_check"]["changed"] and results["r_check"]["version"] is None
    assert results["r_create"]["action"] == "created" and results["r_create"]["version"] == 1
    assert results["r_not_due"]["changed"] is False and results["r_not_due"]["version"] == 1
    assert results["r_forced"]["rotated"] and results["r_forced"]["version"] == 2
    assert "password" not in results["r_forced"]["diff"]["after"]
    first = openbao.kv_get("smtp", "%s/admin" % tid, version=1)["data"]
    latest = openbao.kv_get("smtp", "%s/admin" % tid)["data"]
    assert latest["username"] == first["username"] == "admin@%s.test" % tid
    assert latest["webmail_url"] == "https://m/" and latest["rotation_policy"] == "90_days"
    assert latest["password"] != first["password"] and len(latest["password"]) == 32
    for secret in (first["password"], latest["password"]):
        assert secret not in run.stdout + run.stderr  # history keeps it, output never shows it


def test_due_rotation_and_bad_input_change_nothing(openbao, tmp_path):
    tid = tenant()
    openbao.kv_put("smtp", "%s/admin" % tid, {"username": "admin@x.test", "password": "old-password-0123456789",
                                              "last_rotated": "2020-01-01T00:00:00Z"})
    results, run = run_tasks("""
        - name: Due rotation
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %s, state: rotated}
          register: r_due
        - name: A tenant id that climbs out of its path
          penguinmails.vps.vault_smtp_credentials: {tenant_id: "../x", state: rotated, force: true}
          register: r_bad
          ignore_errors: true
        - name: Missing credentials without a username
          penguinmails.vps.vault_smtp_credentials: {tenant_id: nobody%s}
          register: r_missing
          ignore_errors: true
        - name: A password handed back without no_log
          penguinmails.vps.vault_smtp_credentials: {tenant_id: %s, return_password: true}
          register: r_nolog
          ignore_errors: true
    """ % (tid, tid[4:], tid), tmp_path, env=openbao.env())
    assert run.returncode == 0, run.stdout[-3000:]
    assert results["r_due"]["rotated"] and results["r_due"]["version"] == 2
    assert results["r_bad"]["failed"] and "invalid tenant id" in results["r_bad"]["msg"]
    assert results["r_missing"]["failed"] and "give username" in results["r_missing"]["msg"]
    assert results["r_nolog"]["failed"] and "no_log" in results["r_nolog"]["msg"]
    assert metadata_versions(openbao, tid) == 2
    assert "old-password-0123456789" not in run.stdout + run.stderr


def test_two_concurrent_rotations_exactly_one_wins(openbao):
    tid = tenant()
    openbao.kv_put("smtp", "%s/admin" % tid, {"username": "admin@c.test", "password": "p" * 24})
    client = vc.get_client({"url": openbao.addr, "token": openbao.token})
    stores = [smtp_credentials.SmtpCredentialsStore(client, tid) for _index in range(2)]
    plans = [store.plan("rotated", timeutil.utcnow(), force=True) for store in stores]  # both read version 1
    outcomes = []
    barrier = threading.Barrier(2)

    def commit(store, plan):
        barrier.wait(30)
        try:
            outcomes.append(("won", store.commit(plan)))
        except vc.VaultCASConflict as exc:
            outcomes.append(("lost", str(exc)))

    threads = [threading.Thread(target=commit, args=pair) for pair in zip(stores, plans)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(kind for kind, _detail in outcomes) == ["lost", "won"]
    lost = next(detail for kind, detail in outcomes if kind == "lost")
    assert "check-and-set conflict" in lost and "p" * 24 not in lost
    winner = next(plan for plan in plans if plan.version == 2)
    assert openbao.kv_get("smtp", "%s/admin" % tid)["data"]["password"] == winner.after["password"]
    assert metadata_versions(openbao, tid) == 2
