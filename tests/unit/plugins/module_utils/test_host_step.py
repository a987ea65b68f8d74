# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""host_step: the decisions of the fleet host step against a real OpenBao.

The host side is the real batch logic (module_utils/host_batch) on files under tmp_path; only the login from the
controller is replaced by a function of the test (the lab tests log in to real sshd hosts).
"""

from __future__ import annotations

import itertools
import os
import pwd

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils import audit, host_batch, host_step
from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store as ks
from ansible_collections.penguinmails.vps.plugins.module_utils import ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc

ME = pwd.getpwuid(os.getuid()).pw_name
_counter = itertools.count()


def keygen(key_type, bits=None, comment=""):
    return ssh_keys.generate_keypair("ed25519", comment=comment)


@pytest.fixture()
def vault(openbao):
    return vc.get_client({"url": openbao.addr, "token": openbao.token})


def new_tenant(vault, rotate=True):
    """A tenant with both keys; with ``rotate`` its keys were just rotated (unconfirmed, the admin key has a fallback)."""
    tenant_id = "hs%04d" % next(_counter)
    for role in ("admin", "tenant"):
        store = ks.KeypairStore(vault, tenant_id, role, keygen=keygen)
        store.commit(store.plan("present"))
        if rotate:
            store.commit(store.plan("confirmed"))
            store.commit(store.plan("rotated", force=True))
    return tenant_id


class Host(object):
    """The host side of the step: the real batch logic on files of tmp_path (every account's file is one file)."""

    def __init__(self, tmp_path):
        self.tmp_path = tmp_path
        self.calls = []
        self.unreachable = False

    def __call__(self, module_args):
        self.calls.append(module_args)
        if self.unreachable:
            return dict(unreachable=True, msg="ssh: connect to host 192.0.2.1 port 22: No route to host")
        # every account is the test's own user here, so the tenant accounts' owner marks are left out
        entries = [dict(e, user=ME, manage_user=False, owner=None, path=str(self.tmp_path / ("%s.keys" % e["user"])))
                   for e in module_args["entries"]]
        principals = [dict(p, path=str(self.tmp_path / "principals" / os.path.basename(p["path"]))) for p in module_args["principals"]]
        results, principals, diffs = host_batch.apply(entries, principals, run=None, lock_dir=str(self.tmp_path / "lock"))
        return dict(changed=True, entry_results=results, principal_results=principals, diff=diffs)


def step(vault, host, tenants, check_mode=False, login=None, **args):
    spec = dict((name, value.get("default")) for name, value in host_step.argument_spec().items())
    spec.update(jobs=[dict(tenant_id=t, roles=["admin", "tenant"], rotated_roles=["admin", "tenant"]) for t in tenants])
    spec.update(args)
    hs = host_step.HostStep(vault, spec, dict(name="vps-1", address="192.0.2.1", port=22), {}, host, check_mode=check_mode)
    hs._login = login or (lambda tenant, role: None)
    return hs


def test_every_tenant_in_two_calls_confirmed_and_audited_with_declared_fields(vault, tmp_path):
    host = Host(tmp_path)
    tenants = [new_tenant(vault) for _index in range(3)]
    result = step(vault, host, tenants).run()
    assert result["failures"] == [], result["failures"]
    assert len(host.calls) == 2  # install, then drop the fallbacks: per host, not per tenant
    assert result["failures"] == [] and all(result["tenants"][t]["ok"] for t in tenants)
    for tenant_id in tenants:
        admin = vault.read("vps", "%s/admin_ssh" % tenant_id).data
        assert ks.is_confirmed(admin) and not admin.get("fallback_private_key")
    assert len(result["audit_events"]) == 6 and len(result["notices"]) == 3
    for event in result["audit_events"]:
        assert not set(event["details"]) - audit.detail_fields(event["action"])
    text = repr(result)
    for tenant_id in tenants:
        assert vault.read("vps", "%s/admin_ssh" % tenant_id).data["private_key"] not in text


def test_a_tenant_whose_records_are_bad_fails_alone(vault, tmp_path):
    host = Host(tmp_path)
    good = new_tenant(vault)
    bad = new_tenant(vault)
    data = vault.read("vps", "%s/admin_ssh" % bad).data
    vault.write("vps", "%s/admin_ssh" % bad, dict(data, state="revoked"))
    result = step(vault, host, [bad, "../x", good]).run()
    failed = dict((f["tenant_id"], f["error"]) for f in result["failures"])
    assert sorted(failed) == sorted([bad, "../x"])
    assert "without a managed key" in failed[bad] and failed[bad].startswith(host_step.STAGES["vault"])
    assert result["tenants"][good]["ok"] and ks.is_confirmed(vault.read("vps", "%s/admin_ssh" % good).data)
    failure_events = [e for e in result["audit_events"] if e.get("status") == "failure"]
    assert sorted(e["tenant_id"] for e in failure_events) == sorted([bad, "../x"])
    assert all(e["severity"] == "critical" and not set(e["details"]) - audit.detail_fields(e["action"]) for e in failure_events)


def test_a_refused_login_confirms_nothing_and_keeps_the_fallback(vault, tmp_path):
    host = Host(tmp_path)
    refused, fine = new_tenant(vault), new_tenant(vault)
    result = step(vault, host, [refused, fine],
                  login=lambda tenant, role: "ssh refused the current key" if tenant.tenant_id == refused else None).run()
    assert [f["tenant_id"] for f in result["failures"]] == [refused]
    assert host_step.STAGES["login"] in result["failures"][0]["error"]
    admin = vault.read("vps", "%s/admin_ssh" % refused).data
    assert not ks.is_confirmed(admin) and admin["fallback_public_key"].split()[1] in (tmp_path / "root.keys").read_text()
    assert ks.is_confirmed(vault.read("vps", "%s/admin_ssh" % fine).data)


def test_an_unreachable_host_fails_every_tenant_and_changes_nothing(vault, tmp_path):
    host = Host(tmp_path)
    host.unreachable = True
    tenants = [new_tenant(vault), new_tenant(vault)]
    result = step(vault, host, tenants).run()
    assert result["host_unreachable"] and len(host.calls) == 1
    assert sorted(f["tenant_id"] for f in result["failures"]) == sorted(tenants)
    assert all("host unreachable" in f["error"] for f in result["failures"])
    assert not any(ks.is_confirmed(vault.read("vps", "%s/admin_ssh" % t).data) for t in tenants)


def test_check_mode_logs_in_nowhere_and_writes_nothing(vault, tmp_path):
    host = Host(tmp_path)
    tenant_id = new_tenant(vault)
    before = vault.metadata("vps", "%s/admin_ssh" % tenant_id)["current_version"]
    logins = []
    result = step(vault, host, [tenant_id], check_mode=True, login=lambda tenant, role: logins.append(role)).run()
    assert logins == [] and len(host.calls) == 1 and result["tenants"][tenant_id]["ok"]
    assert vault.metadata("vps", "%s/admin_ssh" % tenant_id)["current_version"] == before


def test_a_key_rotated_by_another_run_meanwhile_is_not_confirmed_and_said_in_one_line(vault, tmp_path):
    host = Host(tmp_path)
    tenant_id = new_tenant(vault)
    racer = ks.KeypairStore(vault, tenant_id, "admin", keygen=keygen)

    def login(tenant, role):
        if role == "admin":  # another run rotates the admin key while this one checks the host
            racer.commit(racer.plan("rotated", force=True))
        return None

    result = step(vault, host, [tenant_id], login=login).run()
    assert result["tenants"][tenant_id]["ok"]
    newest = vault.read("vps", "%s/admin_ssh" % tenant_id).data
    assert not ks.is_confirmed(newest)  # the other run confirms its own key
    (line,) = [line for line in result["superseded"] if line.startswith("%s/admin" % tenant_id)]
    assert newest["fingerprint"] in line and "no rerun needed" in line and "\n" not in line


def test_the_rotation_answer_gives_the_new_fingerprint_and_the_actual_grace():
    """The specification answers a rotation with the new fingerprint and "Old key valid for 24 hours"."""
    now = ks.parse_time("2026-12-05T18:00:00Z")
    view = dict(fingerprint="SHA256:new", grace_keys=[{"key": "ssh-rsa AAAA old", "expires": "2026-12-06T18:00:00Z"}])
    line = host_step.HostStep.answer("acme", "tenant", view, now=now)
    assert line == "rotated acme tenant key: new fingerprint SHA256:new; Old key valid for 24 hours (until 2026-12-06T18:00:00Z)"
    view["grace_keys"][0]["expires"] = "2026-12-05T20:00:00Z"  # a 2-hour grace (ssh_grace_hours=2)
    assert "Old key valid for 2 hours" in host_step.HostStep.answer("acme", "tenant", view, now=now)
    assert host_step.HostStep.answer("acme", "admin", dict(fingerprint="SHA256:x", grace_keys=[]), now=now).endswith(
        "no earlier key stays valid")
