# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The tenant is told: rotate, revoke and regenerate of its SSH key mail the contact address of its record.

The tenant is seeded as migrate's tests seed it (tests/lab/seed.py): its VPS runs Debian's Postfix and Dovecot
from what roles/mailu renders, and it is also the relay of the notices (port 25, no TLS: the lab's stand-in for
the company's relay), so each notice travels through a real MTA into the tenant's real mailbox. A relay that
cannot be reached costs the tenant nothing: the key still rotates, the failed notice is audited as a warning.
"""

from __future__ import annotations

import email
import email.policy
import os

import pytest

from ansible_collections.penguinmails.vps.plugins.module_utils.validators import tenant_account
from tests.lab import mail as lab_mail
from tests.lab import seed
from tests.support.wait import wait_until

RELAY_DOWN_PORT = 9  # discard: nothing listens there on a lab host


@pytest.fixture(scope="module")
def tenant(lab):
    return seed.seed_tenant(lab)


@pytest.fixture()
def workdir(tmp_path):
    os.chmod(str(tmp_path), 0o700)
    return str(tmp_path)


def relay(tenant, port=25):
    return {"penguinmails_notify_smtp_host": tenant["old_vps"]["ip"], "penguinmails_notify_smtp_port": port,
            "penguinmails_notify_security": "none"}


def mailbox(lab, tenant):
    root = os.path.join(lab.state_dir, "hosts", tenant["old_vps"]["lab_host"], "fs", "mailu")
    found = []
    for path in lab_mail.mailbox_messages(root, tenant["admin_user"]):
        with open(path, "rb") as handle:
            found.append(email.message_from_binary_file(handle, policy=email.policy.default))
    return found


def next_notice(lab, tenant, seen, subject):
    """The one notice delivered after the ``seen`` messages (Postfix delivers through LMTP on its own time)."""
    wait_until(lambda: len(mailbox(lab, tenant)) > seen, timeout=60, what="the notice in the tenant's mailbox")
    new = mailbox(lab, tenant)[seen:]
    assert [str(message["Subject"]) for message in new] == [subject]
    assert new[0]["To"] == tenant["admin_user"]
    return new[0].get_content()


def play(lab, tenant, workdir, playbook, **extra):
    audit_file = os.path.join(workdir, "audit.jsonl")
    values = dict(relay(tenant), **extra)
    result = seed.run_lab_playbook(lab, tenant, workdir, "penguinmails.vps.%s" % playbook, values, audit_file=audit_file)
    assert result.returncode == 0, result.stdout[-3000:]
    private = seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data.get("private_key") or ""
    if private:
        assert private.splitlines()[1] not in result.stdout
    return [event for event in seed.read_events(audit_file) if event.get("tenantId") == tenant.tenant_id]


def notified(events):
    return [(event["details"]["event"], event["status"], event["severity"]) for event in events
            if event["action"] == "tenant_notified"]


def test_rotate_mails_the_new_fingerprint_the_grace_end_and_what_to_do(lab, tenant, workdir):
    seen = len(mailbox(lab, tenant))
    events = play(lab, tenant, workdir, "rotate", ssh_role="tenant", force=True)
    key = seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data
    body = next_notice(lab, tenant, seen, "Your SSH key was rotated")
    account = tenant_account(tenant.tenant_id)
    assert "New key fingerprint: %s" % key["fingerprint"] in body
    assert key["grace_until"] and "keeps working until %s" % key["grace_until"] in body
    assert "ssh -i %s.key %s@%s" % (account, account, tenant["old_vps"]["ip"]) in body
    assert "chmod 600 %s.key" % account in body
    assert "PRIVATE KEY" not in body
    assert notified(events) == [("ssh_key_rotated", "success", "info")]


def test_revoke_and_regenerate_tell_the_tenant_too(lab, tenant, workdir):
    seen = len(mailbox(lab, tenant))
    play(lab, tenant, workdir, "revoke", ssh_role="tenant")
    body = next_notice(lab, tenant, seen, "Your SSH key was revoked")
    assert "no longer logs in" in body

    events = play(lab, tenant, workdir, "regenerate", ssh_role="tenant")
    key = seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data
    body = next_notice(lab, tenant, seen + 1, "A new SSH key was made for you")
    assert "New key fingerprint: %s" % key["fingerprint"] in body
    assert notified(events) == [("ssh_key_revoked", "success", "info"), ("ssh_key_regenerated", "success", "info")]


def test_a_notice_that_cannot_be_sent_is_a_warning_and_the_key_still_rotates(lab, tenant, workdir):
    before = seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data["fingerprint"]
    seen = len(mailbox(lab, tenant))
    events = play(lab, tenant, workdir, "rotate", ssh_role="tenant", force=True,
                  penguinmails_notify_smtp_port=RELAY_DOWN_PORT)
    after = seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data
    assert after["fingerprint"] != before
    assert [(e["action"], e["status"]) for e in events if e["action"] == "ssh_key_rotated"][-1] == ("ssh_key_rotated", "success")
    assert notified(events) == [("ssh_key_rotated", "failure", "warning")]
    failed = [e for e in events if e["action"] == "tenant_notified"][0]
    assert failed["details"]["error"]
    # The key the tenant now holds logs in to its account, even though it was not told.
    login = seed.ssh_with_key(seed.vault(lab).read("vps", "%s/tenant_ssh" % tenant.tenant_id).data["private_key"],
                              tenant["old_vps"]["ip"], "id -un", workdir, user=tenant_account(tenant.tenant_id))
    assert login.returncode == 0 and login.stdout.strip() == tenant_account(tenant.tenant_id), login.stderr
    assert len(mailbox(lab, tenant)) == seen
