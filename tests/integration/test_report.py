# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/report.yml against a real OpenBao: both files, urgency order, statuses, modes, no secrets."""

from __future__ import annotations

import datetime
import os
import re
import secrets
import stat
import subprocess
import sys

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link
from tests.support.openbao import free_port

NOW = datetime.datetime(2026, 6, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
PLAYBOOK = os.path.join(REPO, "playbooks", "report.yml")
MOUNTS = {"vps": "vps", "smtp": "smtp", "dkim": "dkim"}  # the layout's KV mounts (a test may pass its own)
SECRET_MARKERS = ("PRIVATE KEY", "smtp-Secret", "b3BlbnNzaC1rZXktdjE")  # PEM header, the password, OpenSSH key body


def days_ago(days):
    return keypair_store.format_time(NOW - datetime.timedelta(days=days))


def put_key(client, tenant, role, age_days, state="active", downloaded=False, mounts=None):
    """A real key pair stored the way vault_ssh_keypair stores it, last rotated age_days before NOW."""
    pair = ssh_keys.generate_keypair("ed25519", comment="%s-%s" % (tenant, role))
    record = keypair_store.record_created(pair, NOW - datetime.timedelta(days=age_days), 90)
    if downloaded:
        record = keypair_store.record_downloaded(record, NOW - datetime.timedelta(days=age_days - 1))
    if state == "revoked":
        record = keypair_store.record_revoked(record, NOW - datetime.timedelta(days=1))
    client.write((mounts or MOUNTS)["vps"], "%s/%s_ssh" % (tenant, role), record)
    return pair


def complete_tenant(client, tenant, admin_age, tenant_age, tenant_state="active", mounts=None):
    """Both keys, a record, SMTP admin credentials and a DKIM key."""
    mounts = mounts or MOUNTS
    pairs = [put_key(client, tenant, "admin", admin_age, mounts=mounts),
             put_key(client, tenant, "tenant", tenant_age, state=tenant_state, downloaded=True, mounts=mounts)]
    domain = "%s.example.com" % tenant
    client.write(mounts["vps"], "%s/record" % tenant, {"domain": domain, "vps_ip": "203.0.113.7",
                                                       "contact_email": "" if "soon" in tenant else "ops@" + domain})
    client.write(mounts["smtp"], "%s/admin" % tenant, {"username": "admin@" + domain, "password": "smtp-Secret-%s" % tenant})
    client.write(mounts["dkim"], "%s/dkim" % domain, {"private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
                                                      "public_key": "MIIB"})
    return pairs


def seed(client, prefix, mounts=None):
    """fresh (ok), soon (admin due in 5 days: warning), revoked (tenant key revoked: warning),
    due (admin overdue: critical), bare (admin key missing, nothing else: critical)."""
    names = dict((kind, "%s-%s" % (prefix, kind)) for kind in ("fresh", "soon", "revoked", "due", "bare"))
    pairs = []
    pairs += complete_tenant(client, names["fresh"], admin_age=3, tenant_age=3, mounts=mounts)
    pairs += complete_tenant(client, names["soon"], admin_age=85, tenant_age=10, mounts=mounts)
    pairs += complete_tenant(client, names["revoked"], admin_age=2, tenant_age=20, tenant_state="revoked", mounts=mounts)
    pairs += complete_tenant(client, names["due"], admin_age=100, tenant_age=30, mounts=mounts)
    pairs.append(put_key(client, names["bare"], "tenant", 1, mounts=mounts))
    return names, pairs


def run_report(server, report_dir, extra_vars=(), inventory=None):
    ensure_collection_link()
    if inventory is None:
        inventory = os.path.join(os.path.dirname(str(report_dir)), "inventory.ini")
        with open(inventory, "w") as handle:
            handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, PLAYBOOK,
           "-e", "report_dir=%s" % report_dir, "-e", "report_now=%s" % keypair_store.format_time(NOW)]
    for item in extra_vars:
        cmd += ["-e", item]
    proc = subprocess.run(cmd, env=ansible_env(server.env()), capture_output=True, text=True, timeout=300, cwd=REPO,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    for marker in SECRET_MARKERS:
        assert marker not in proc.stdout + proc.stderr
    return proc


def read_outputs(report_dir):
    outputs = {}
    for ext in ("html", "md"):
        path = os.path.join(str(report_dir), "key-health.%s" % ext)
        assert os.path.isfile(path), path
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640
        with open(path) as handle:
            outputs[ext] = handle.read()
    return outputs


def assert_no_secrets(text, pairs):
    for marker in SECRET_MARKERS:
        assert marker not in text
    for pair in pairs:
        body = "".join(pair.private_key.strip().splitlines()[1:-1])
        assert body[:40] not in text and body[-40:] not in text


def test_report_files_order_statuses_and_no_secrets(openbao, tmp_path):
    client = vc.get_client({"url": openbao.addr, "token": openbao.token})
    names, pairs = seed(client, "rp" + secrets.token_hex(3))
    report_dir = tmp_path / "out"
    ids = [names[k] for k in ("fresh", "revoked", "bare", "soon", "due")]
    proc = run_report(openbao, report_dir, ["tenant_ids=%s" % ",".join(ids)])
    outputs = read_outputs(report_dir)
    # Loud when unheard: the tenants nobody can tell (no contact address), and the run's alerts going nowhere.
    unheard = sorted([names["bare"], names["soon"]])
    assert "without a contact address (never told of a rotation or a migration): %s" % ", ".join(unheard) in proc.stdout
    assert "no contact_email in the record): %s." % ", ".join(unheard) in outputs["md"].replace("`", "")
    said = " ".join((proc.stdout + proc.stderr).replace("[WARNING]:", " ").split())  # warnings are wrapped to the terminal
    assert "no alert of this run can reach anyone: the audit callback is not enabled" in said
    assert "Alerts of this run: no alert of this run can reach anyone: the audit callback is not enabled" in outputs["md"]
    expected_order = [names[k] for k in ("bare", "due", "soon", "revoked", "fresh")]

    md = outputs["md"]
    rows = [line for line in md.splitlines() if re.match(r"^\| \d+ \|", line)]
    assert [row.split("|")[3].strip() for row in rows] == expected_order
    levels = ["critical", "critical", "warning", "warning", "ok"]
    assert [row.split("|")[2].strip() for row in rows] == ["**%s**" % level for level in levels]
    assert "5 tenant(s)" in md and "**2 critical**, 2 warning, 1 ok" in md
    key_rows = [[c.strip() for c in line.split("|")[1:-1]] for line in md.splitlines() if re.match(r"^\| [\d ]*\| ", line)]
    by_tenant, current = {}, None
    for row in key_rows:
        current = row[2] or current
        by_tenant[(current, row[4])] = row
    assert by_tenant[(names["due"], "admin")][5] == "expired"
    assert by_tenant[(names["due"], "admin")][6] == "100 d"
    assert by_tenant[(names["due"], "admin")][7] == days_ago(100)
    assert by_tenant[(names["revoked"], "tenant")][5] == "revoked"
    assert by_tenant[(names["revoked"], "tenant")][8:10] == ["-", "-"]  # a revoked key has no next rotation
    assert by_tenant[(names["bare"], "admin")][5] == "missing"
    fresh_admin = by_tenant[(names["fresh"], "admin")]
    assert fresh_admin[5] == "active" and fresh_admin[6] == "3 d" and fresh_admin[7] == days_ago(3)
    # the planned rotation is spread per tenant: the period less the tenant's offset (never later than 90 days)
    offset = keypair_store.due_offset_days(names["fresh"], "admin", 90)
    assert fresh_admin[8] == days_ago(3 - 90 + offset) and fresh_admin[9] == "%d d" % (87 - offset)
    assert fresh_admin[11] == "yes" and fresh_admin[12] == "dkim"
    assert by_tenant[(names["fresh"], "tenant")][10].startswith("yes, ")
    assert by_tenant[(names["bare"], "admin")][11] == "**no**" and by_tenant[(names["bare"], "admin")][12] == "**no**"
    soon_days = 5 - keypair_store.due_offset_days(names["soon"], "admin", 90)
    soon_issue = "admin key rotation due in %d day(s)" % soon_days if soon_days > 0 else "admin key rotation due now"
    assert "admin key rotation overdue by 10 day(s)" in md and soon_issue in md

    html = outputs["html"]
    assert re.findall(r'<tr class="(\w+)" data-tenant="([^"]+)">\s*<td rowspan', html) == [
        ("critical", names["bare"]), ("critical", names["due"]), ("warning", names["soon"]),
        ("warning", names["revoked"]), ("ok", names["fresh"])]
    assert '<td class="status-expired">expired</td>' in html and '<td class="status-revoked">revoked</td>' in html
    assert html.count("<tr class=") == 2 * 5  # two rows per tenant

    for text in outputs.values():
        assert_no_secrets(text, pairs)


def test_report_every_tenant_and_failed_logins(private_vault, tmp_path):
    """Without tenant_ids every tenant is reported; a hosts group adds the failed SSH logins section
    (a host that is down is listed as not read)."""
    client = vc.get_client({"url": private_vault.addr, "token": private_vault.token})
    names, pairs = seed(client, "all", mounts=private_vault.mounts)  # this test's own mounts on the session OpenBao
    log = tmp_path / "auth.log"
    log.write_text(
        "Jun  1 09:00:01 vps1 sshd[100]: Failed publickey for root from 198.51.100.4 port 40022 ssh2: ED25519 SHA256:AbCdEf\n"
        "Jun  1 10:15:00 vps1 sshd[101]: Invalid user bob from 198.51.100.5 port 50000\n"
        "Jun  1 10:15:02 vps1 sshd[101]: Failed password for invalid user bob from 198.51.100.5 port 50000 ssh2\n"
        "Jun  1 10:16:02 vps1 sshd[102]: Failed password for root from 198.51.100.4 port 50001 ssh2\n"
        "Jun  1 10:16:09 vps1 sshd[102]: Failed password for root from 198.51.100.4 port 50001 ssh2\n"
    )
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "localhost ansible_connection=local ansible_python_interpreter={py}\n\n[penguinmails_vps]\n"
        "vps1 ansible_connection=local ansible_python_interpreter={py}\n"
        # a VPS that is down: listed as not read, the report is still written
        "vps2 ansible_host=127.0.0.1 ansible_port={port} ansible_ssh_common_args='-o ConnectTimeout=5'\n"
        .format(py=sys.executable, port=free_port()))
    report_dir = tmp_path / "reports"
    mount_vars = ["penguinmails_vault_%s_mount=%s" % item for item in sorted(private_vault.mounts.items())]
    proc = run_report(private_vault, report_dir, ["report_auth_log_path=%s" % log, "report_since=2000-01-01T00:00:00Z"] + mount_vars,
                      inventory=str(inventory))
    assert "Audit the failed logins" in proc.stdout
    outputs = read_outputs(report_dir)
    md, html = outputs["md"], outputs["html"]
    for name in names.values():
        assert name in md and name in html
    assert "5 tenant(s)" in md
    assert "## Failed SSH logins" in md
    assert re.search(r"^\| vps1 \| 5 \| 1 \| 198\.51\.100\.4: 3, 198\.51\.100\.5: 2 \|$", md, re.M), md
    assert re.search(r"^Not read:\n- vps2: ", md, re.M), md
    assert "<li>vps2: " in html
    assert '<table id="ssh-failures">' in html and "198.51.100.4: 3, 198.51.100.5: 2" in html
    for text in outputs.values():
        assert_no_secrets(text, pairs)


def test_report_default_dir_is_in_home_and_bad_input_names_one_rule(openbao, tmp_path):
    """Without report_dir the report goes to ~/penguinmails-reports (never next to the playbook, inside the
    collection); without a penguinmails_vps group nothing warns; bad input fails naming the one rule broken."""
    client = vc.get_client({"url": openbao.addr, "token": openbao.token})
    names, _pairs = seed(client, "dd" + secrets.token_hex(3))
    home = tmp_path / "home"
    home.mkdir()
    inventory = tmp_path / "inventory.ini"
    inventory.write_text("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
    before = sorted(os.listdir(os.path.join(REPO, "playbooks")))

    def report(*extra):
        cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", str(inventory), "penguinmails.vps.report",
               "-e", "tenant_ids=%s" % names["fresh"]]
        for item in extra:
            cmd += ["-e", item]
        return subprocess.run(cmd, env=ansible_env(dict(openbao.env(), HOME=str(home))), capture_output=True,
                              text=True, timeout=300, cwd=str(tmp_path), check=False)

    proc = report()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    warned = [line for line in (proc.stdout + proc.stderr).splitlines()
              if "WARNING" in line and "no alert of this run can reach anyone" not in line]  # that one is meant
    assert not warned, proc.stdout + proc.stderr
    outputs = read_outputs(home / "penguinmails-reports")
    assert names["fresh"] in outputs["md"]
    assert stat.S_IMODE(os.stat(str(home / "penguinmails-reports")).st_mode) == 0o750
    assert sorted(os.listdir(os.path.join(REPO, "playbooks"))) == before
    assert not os.path.exists(str(tmp_path / "reports"))

    cases = [
        (["report_dir=reports"], "report: report_dir must be an absolute path (or start with ~), not reports"),
        (["report_dir=%s" % (tmp_path / "x"), "report_name=../k"],
         "report: report_name must be a plain file name (letters, digits, _ . -; at most 100 characters)"),
        (["report_dir=%s" % (tmp_path / "x"), "tenant_ids=ok1,bad/id"], "report: tenant_id: "),
    ]
    for extra, message in cases:
        proc = report(*extra)
        output = proc.stdout + proc.stderr
        assert proc.returncode != 0
        # The error names that one rule and nothing else, before anything was read or written.
        errors = re.findall(r'"msg": "(report: [^"]*)"', output)
        assert len(errors) == 1 and errors[0].startswith(message), output[-3000:]
        assert " and " not in errors[0] and "Read the status" not in output
        assert not os.path.exists(str(tmp_path / "x")) and not os.path.exists(str(tmp_path / "reports"))
