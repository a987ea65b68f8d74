# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant record's rules for penguinmails.vps.provision (a migration with reason provision, of a tenant with no VPS)."""
from __future__ import annotations

import datetime

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_record as tr

T0 = datetime.datetime(2026, 12, 5, 12, 0, 0, tzinfo=datetime.timezone.utc)
NEW = {"domain": "acme.test", "contact_email": "it@acme.test", "dkim_selector": "dkim"}
OLD = dict(NEW, vps_id="101", vps_ip="198.18.0.2", vps_name="pm-acme-1")


def run(state, before, **request):
    return tr.plan("acme", state, before, 3, T0, request)


def walk(steps):
    """A provisioning from NEW through ``steps``; the record after the last."""
    data = run("migrating", dict(NEW), reason="provision", run_id="r1").after
    for step in steps:
        state = "migrated" if step == "record_updated" else "migrating"
        extra = {"new_vps_id": "202", "new_vps_ip": "198.18.0.3"} if state == "migrating" else {}
        data = run(state, data, step=step, run_id="r1", **extra).after
    return data


def test_a_provisioning_starts_only_for_a_tenant_without_a_vps_and_a_migration_only_with_one():
    started = run("migrating", dict(NEW), reason="provision", run_id="r1").after["migration"]
    assert started["server_name"] == "pm-acme-1" and started["reason"] == "provision" and "old_vps_id" not in started
    with pytest.raises(tr.RecordError, match="has a VPS already .*pm-acme-1.*migrate it instead"):
        run("migrating", dict(OLD), reason="provision", run_id="r1")
    with pytest.raises(tr.RecordError, match="has no VPS yet: provision it"):
        run("migrating", dict(NEW), reason="upgrade", run_id="r1")
    assert run("migrating", dict(OLD), reason="upgrade", run_id="r1").after["migration"]["server_name"] == "pm-acme-2"


def test_provision_steps_are_ordered_among_migrate_steps_and_recorded():
    assert tr.STEPS == tuple(step for step in tr.ORDER if step not in tr.PROVISION_STEPS)  # migrate's steps unchanged
    data = walk(["secrets_created", "provisioned", "ssh_access", "mailu", "dkim", "verified", "dns_switched",
                 "record_updated", "first_backup", "welcome_sent"])
    assert data["migration"]["step"] == "welcome_sent"
    assert set(data["migration"]["steps"]) >= {"recorded", "secrets_created", "first_backup", "welcome_sent"}
    # the record holds the VPS, with provisioned_at; nothing of a move
    assert data["vps_name"] == "pm-acme-1" and data["vps_ip"] == "198.18.0.3" and data["provisioned_at"]
    assert not {"migrated_at", "migration_reason", "previous_vps_id", "previous_vps_ip"} & set(data)
    with pytest.raises(tr.RecordError, match="switched DNS already"):
        run("aborted", data, run_id="r1")


def test_a_completed_provisioning_is_last_provision_so_a_migration_may_follow_at_once():
    done = run("completed", walk(["secrets_created", "provisioned", "dns_switched", "record_updated", "welcome_sent"]),
               run_id="r1").after
    assert "migration" not in done and "last_migration" not in done
    assert done["last_provision"]["step"] == "welcome_sent" and done["last_provision"]["completed_at"]
    moved = run("migrating", done, reason="upgrade", run_id="r2").after["migration"]
    assert moved["server_name"] == "pm-acme-2" and moved["old_vps_name"] == "pm-acme-1"


def test_an_aborted_provisioning_leaves_a_tenant_without_a_vps_that_can_be_provisioned_again():
    aborted = run("aborted", walk(["secrets_created", "provisioned"]), run_id="r1").after
    assert "migration" not in aborted and "vps_ip" not in aborted
    assert aborted["last_aborted_migration"]["reason"] == "provision"
    assert run("migrating", aborted, reason="provision", run_id="r2").after["migration"]["step"] == "recorded"


def test_an_unknown_step_or_reason_is_refused():
    with pytest.raises(tr.RecordError, match="invalid step 'welcomed'"):
        run("migrating", dict(NEW), reason="provision", run_id="r1", step="welcomed")
    with pytest.raises(tr.RecordError, match="invalid reason 'onboard'"):
        run("migrating", dict(NEW), reason="onboard", run_id="r1")
