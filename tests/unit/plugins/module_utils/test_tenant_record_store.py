# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant record and its migration state: pure planning rules, then the store against OpenBao."""
from __future__ import annotations

import datetime
import itertools

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_record as tr
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError

T0 = datetime.datetime(2026, 11, 23, 12, 0, 0, 250000, tzinfo=datetime.timezone.utc)
_counter = itertools.count()

OLD = {"domain": "acme.test", "vps_id": "101", "vps_ip": "198.18.0.2", "vps_name": "pm-acme-1", "plan": "1", "region": "1"}


def later(seconds):
    return T0 + datetime.timedelta(seconds=seconds)


def run(state, before, now=T0, version=3, **request):
    return tr.plan("acme", state, before, version, now, request)


# -- pure rules ------------------------------------------------------------------------------
def test_query_changes_nothing():
    planned = run("query", dict(OLD))
    assert not planned.changed and planned.after == OLD
    assert not run("query", None).changed


def test_present_sets_only_given_fields_and_normalises():
    planned = run("present", dict(OLD), vps_id=202, domain="ACME.test.")
    assert planned.changed
    assert planned.after == dict(OLD, vps_id="202", domain="acme.test")
    assert not run("present", dict(OLD), vps_ip="198.18.0.2").changed
    assert run("present", None).after is None  # nothing to write, no empty record


def test_present_rejects_bad_values():
    with pytest.raises(ValidationError, match="invalid domain"):
        run("present", None, domain="not a domain")
    with pytest.raises(ValidationError, match="invalid vps id"):
        run("present", None, vps_id="a b")
    with pytest.raises(ValidationError, match="invalid tenant id"):
        tr.plan("../x", "query", None, 0, T0, {})


def test_present_records_the_dkim_selector():
    planned = run("present", dict(OLD), dkim_selector="d20261123")
    assert planned.changed and planned.after == dict(OLD, dkim_selector="d20261123")
    with pytest.raises(ValidationError):
        run("present", dict(OLD), dkim_selector="../x")


def test_next_server_name():
    assert tr.next_server_name("acme", OLD) == "pm-acme-2"
    assert tr.next_server_name("acme", {"vps_name": "pm-acme-7", "previous_vps_name": "pm-acme-9"}) == "pm-acme-10"
    assert tr.next_server_name("acme", {"vps_id": "5", "vps_name": "legacy"}) == "pm-acme-2"
    assert tr.next_server_name("acme", {}) == "pm-acme-1"
    assert tr.next_server_name("acme", {"last_migration": {"server_name": "pm-acme-4"}, "vps_name": "x"}) == "pm-acme-5"


def test_migration_start_captures_old_vps_and_resume_keeps_it():
    started = run("migrating", dict(OLD), reason="compromise")
    migration = started.after["migration"]
    assert started.changed and not started.resumed
    assert migration == {
        "reason": "compromise",
        "started_at": "2026-11-23T12:00:00Z",
        "server_name": "pm-acme-2",
        "old_vps_id": "101",
        "old_vps_ip": "198.18.0.2",
        "old_vps_name": "pm-acme-1",
        "step": "recorded",
        "steps": {"recorded": "2026-11-23T12:00:00.250Z"},
    }
    # The record itself still names the old VPS.
    assert {k: started.after[k] for k in OLD} == OLD
    # A rerun (another reason given, even) resumes: nothing changes, the reason stays.
    again = run("migrating", started.after, now=later(60), reason="upgrade")
    assert again.resumed and not again.changed
    assert "resuming" in again.message and again.after["migration"]["reason"] == "compromise"


def test_migration_needs_reason_and_refuses_other_server_name():
    with pytest.raises(tr.RecordError, match="needs a reason"):
        run("migrating", dict(OLD))
    with pytest.raises(tr.RecordError, match="current VPS"):
        run("migrating", dict(OLD), reason="upgrade", server_name="pm-acme-1")
    started = run("migrating", dict(OLD), reason="upgrade", server_name="pm-acme-9").after
    assert started["migration"]["server_name"] == "pm-acme-9"
    with pytest.raises(tr.RecordError, match="in progress"):
        run("migrating", started, server_name="pm-acme-3")


def test_steps_only_advance_and_keep_first_time():
    record = run("migrating", dict(OLD), reason="failure").after
    with pytest.raises(tr.RecordError, match="needs new_vps_id and new_vps_ip"):
        run("migrating", record, step="provisioned")
    record = run("migrating", record, now=later(5), step="provisioned", new_vps_id=202, new_vps_ip="198.18.0.3").after
    record = run("migrating", record, now=later(7), step="dkim").after
    # An earlier step recorded again (a rerun passing it) does not move the step back.
    rerun = run("migrating", record, now=later(9), step="ssh_access")
    assert rerun.after["migration"]["step"] == "dkim"
    assert rerun.after["migration"]["steps"]["ssh_access"] == "2026-11-23T12:00:09.250Z"
    again = run("migrating", rerun.after, now=later(11), step="ssh_access")
    assert not again.changed
    assert record["migration"]["steps"]["provisioned"] == "2026-11-23T12:00:05.250Z"
    with pytest.raises(tr.RecordError, match="invalid step"):
        run("migrating", record, step="teleported")


def test_new_server_identity_is_fixed_once_recorded():
    record = run("migrating", dict(OLD), reason="failure").after
    with pytest.raises(tr.RecordError, match="is the old VPS"):
        run("migrating", record, new_vps_id="101")
    record = run("migrating", record, step="provisioned", new_vps_id="202", new_vps_ip="198.18.0.3").after
    assert not run("migrating", record, step="provisioned", new_vps_id=202, new_vps_ip="198.18.0.3").changed
    with pytest.raises(tr.RecordError, match="recorded new VPS id 202, not 303"):
        run("migrating", record, new_vps_id="303")


def full_migration():
    record = run("migrating", dict(OLD), reason="compromise").after
    record = run("migrating", record, now=later(1), step="secrets_rotated").after
    record = run("migrating", record, now=later(1), step="provisioned", new_vps_id="202", new_vps_ip="198.18.0.3").after
    for offset, step in enumerate(("ssh_access", "mailu", "dkim", "mail_copied", "verified"), start=2):
        record = run("migrating", record, now=later(offset), step=step).after
    return record


def test_migrated_needs_dns_switch_then_switches_once():
    record = full_migration()
    with pytest.raises(tr.RecordError, match="only after dns_switched"):
        run("migrated", record)
    with pytest.raises(tr.RecordError, match="no migration"):
        run("migrated", dict(OLD))
    record = run("migrating", record, now=later(8), step="dns_switched").after
    switched = run("migrated", record, now=later(9), plan="2")
    after = switched.after
    assert switched.changed
    assert after["vps_id"] == "202" and after["vps_ip"] == "198.18.0.3" and after["vps_name"] == "pm-acme-2"
    assert after["previous_vps_id"] == "101" and after["previous_vps_ip"] == "198.18.0.2"
    assert after["previous_vps_name"] == "pm-acme-1"
    assert after["migrated_at"] == "2026-11-23T12:00:09Z" and after["migration_reason"] == "compromise"
    assert after["plan"] == "2" and after["region"] == "1"
    assert after["migration"]["step"] == "record_updated"
    # The old VPS stays known to the migration (for wipe and destroy on a rerun).
    assert after["migration"]["old_vps_id"] == "101"
    assert not run("migrated", after, now=later(30)).changed


def test_completed_keeps_last_migration_and_is_idempotent():
    record = run("migrating", full_migration(), now=later(8), step="dns_switched").after
    with pytest.raises(tr.RecordError, match="record it as migrated"):
        run("completed", record)
    record = run("migrated", record, now=later(9)).after
    record = run("migrated", record, now=later(10), step="final_delta").after
    record = run("migrated", record, now=later(10), step="old_vps_wiped").after
    record = run("migrated", record, now=later(10), step="old_vps_destroyed").after
    done = run("completed", record, now=later(11))
    assert done.changed and "migration" not in done.after
    last = done.after["last_migration"]
    assert last["completed_at"] == "2026-11-23T12:00:11.250Z" and last["step"] == "old_vps_destroyed"
    assert list(last["steps"]) == list(tr.STEPS)
    assert not run("completed", done.after).changed
    assert not run("completed", None).changed
    # The next migration goes on numbering.
    assert run("migrating", done.after, reason="upgrade").after["migration"]["server_name"] == "pm-acme-3"


def test_one_run_holds_a_migration_and_a_gone_run_is_taken_over():
    owner = {"host": "ctl1", "pid": 4242, "pid_start": "99"}
    alive = {"pid": True}

    def pid_alive(pid, start):
        return alive["pid"]

    first = run("migrating", dict(OLD), reason="failure", run_id="r1", run_owner=owner, pid_alive=pid_alive)
    assert first.after["migration"]["run"]["id"] == "r1" and first.abandoned is None
    # Another run on the same controller, while r1's process lives: refused, nothing written.
    with pytest.raises(tr.RecordError, match="a migration run of acme is in progress \\(run r1 on ctl1, pid 4242"):
        run("migrating", first.after, now=later(1), run_id="r2", run_owner=owner, pid_alive=pid_alive)
    # r1 was killed: r2 takes over and gets the abandoned run to audit.
    alive["pid"] = False
    taken = run("migrating", first.after, now=later(2), run_id="r2", run_owner=owner, pid_alive=pid_alive)
    assert taken.after["migration"]["run"]["id"] == "r2"
    assert taken.abandoned == {"run": "r1", "host": "ctl1", "step": "recorded", "found_at": "2026-11-23T12:00:02Z",
                               "taken_over": False}
    # r1 comes back (a paused process): its next step write stops it.
    with pytest.raises(tr.RecordError, match="taken over by run r2"):
        run("migrated", taken.after, run_id="r1")
    # From another controller the lease decides; takeover forces it.
    other = {"host": "ctl2", "pid": 1, "pid_start": "1"}
    with pytest.raises(tr.RecordError, match="in progress"):
        run("migrating", taken.after, now=later(3), run_id="r3", run_owner=other, pid_alive=pid_alive)
    forced = run("migrating", taken.after, now=later(3), run_id="r3", run_owner=other, pid_alive=pid_alive, takeover=True)
    assert forced.abandoned["taken_over"] is True
    expired = T0 + datetime.timedelta(minutes=31)
    assert run("migrating", taken.after, now=expired, run_id="r4", run_owner=other, pid_alive=pid_alive).abandoned["run"] == "r2"


def test_a_failed_run_releases_and_an_ended_run_is_not_called_abandoned():
    owner = {"host": "ctl1", "pid": 7, "pid_start": "1"}

    def dead(pid, start):
        return False

    held = run("migrating", dict(OLD), reason="failure", run_id="r1", run_owner=owner, pid_alive=dead).after
    released = run("migrating", held, run_id="r1", release=True).after
    assert "run" not in released["migration"] and released["migration"]["server_name"] == "pm-acme-2"
    resumed = run("migrating", released, run_id="r2", run_owner=owner, pid_alive=dead)
    assert resumed.abandoned is None and resumed.after["migration"]["run"]["id"] == "r2"
    # r2 ended after auditing its failure but Vault refused its release: its marker keeps r3 from reporting it.
    again = run("migrating", resumed.after, run_id="r3", run_owner=owner, pid_alive=dead, ended_runs=["r2"])
    assert again.abandoned is None
    assert run("migrating", resumed.after, run_id="r3", run_owner=owner, pid_alive=dead).abandoned["run"] == "r2"


def test_a_failed_build_is_replaced_under_a_new_name_and_an_abort_clears_the_migration():
    record = run("migrating", dict(OLD), reason="upgrade").after
    assert record["migration"]["server_name"] == "pm-acme-2"
    replaced = run("migrating", record, now=later(1), replace_server=True)
    assert replaced.after["migration"]["server_name"] == "pm-acme-3" and "goes on with pm-acme-3" in replaced.message
    assert [item["server_name"] for item in replaced.after["migration"]["failed_servers"]] == ["pm-acme-2"]
    again = run("migrating", replaced.after, now=later(2), replace_server=True).after
    assert again["migration"]["server_name"] == "pm-acme-4"
    built = run("migrating", again, now=later(3), step="ssh_access", new_vps_id="9", new_vps_ip="198.18.0.9").after
    with pytest.raises(tr.RecordError, match="set up already"):
        run("migrating", built, replace_server=True)
    aborted = run("aborted", built, now=later(4)).after
    assert "migration" not in aborted and aborted["last_aborted_migration"]["server_name"] == "pm-acme-4"
    switched = run("migrating", full_migration(), now=later(8), step="dns_switched").after
    with pytest.raises(tr.RecordError, match="only be completed, not aborted"):
        run("aborted", switched)


def test_forget_host_keys_of_an_address_and_keep_notes():
    record = dict(OLD, host_keys={"198.18.0.3": ["ssh-ed25519 AAAA"], "198.18.0.2": ["ssh-ed25519 BBBB"]},
                  host_key_fingerprints={"198.18.0.3": ["SHA256:x"]})
    record = run("migrating", record, reason="upgrade", forget_host_keys="198.18.0.3", notes={"host_keys_for": "198.18.0.3"}).after
    assert record["host_keys"] == {"198.18.0.2": ["ssh-ed25519 BBBB"]} and record["host_key_fingerprints"] == {}
    assert record["migration"]["notes"] == {"host_keys_for": "198.18.0.3"}


# -- the store, against a real OpenBao -------------------------------------------------------
def tenant():
    return "tr%04d" % next(_counter)


def store_for(server, tenant_id, now=T0):
    client = vc.get_client({"url": server.addr, "token": server.token})
    return tr.RecordStore(client, tenant_id, clock=lambda: now)


def test_store_writes_with_cas_and_keeps_history(openbao):
    tid = tenant()
    store = store_for(openbao, tid)
    planned = store.plan("present", dict(OLD))
    assert planned.version == 0
    assert store.commit(planned) == 1
    planned = store.plan("migrating", {"reason": "failure"})
    assert store.commit(planned) == 2
    stored = openbao.kv_get("vps", "%s/record" % tid)
    assert stored["data"]["migration"]["server_name"] == "pm-%s-2" % tid
    assert stored["data"]["migration"]["old_vps_id"] == "101"
    assert openbao.kv_get("vps", "%s/record" % tid, version=1)["data"] == OLD


def test_two_concurrent_starts_one_wins(openbao):
    tid = tenant()
    openbao.kv_put("vps", "%s/record" % tid, dict(OLD))
    first = store_for(openbao, tid).plan("migrating", {"reason": "compromise", "server_name": "pm-x-2"})
    second = store_for(openbao, tid).plan("migrating", {"reason": "upgrade", "server_name": "pm-x-3"})
    store_for(openbao, tid).commit(first)
    with pytest.raises(vc.VaultCASConflict, match="check-and-set conflict"):
        store_for(openbao, tid).commit(second)
    assert openbao.kv_get("vps", "%s/record" % tid)["data"]["migration"]["server_name"] == "pm-x-2"
