# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Seed one tenant in a running lab and run playbooks/migrate.yml for it (used by demo.py and the tests).

    tenant = seed_tenant(desc, "acme")       # desc: the lab description (tests.lab.lab.up / the lab fixture)
    proc = run_migrate(desc, tenant, workdir, reason="compromise")    # faults come from outside (simulator, lab)

``seed_tenant`` gives the tenant, as an operator's setup would have left it:

* Vault: ``vps/<t>/admin_ssh`` and ``vps/<t>/tenant_ssh`` (keypair_store, ed25519), ``smtp/<t>/admin``,
  ``dkim/<domain>/dkim`` (PKCS#8, as Mailu writes), ``vps/<t>/record`` (domain, vps_id, vps_ip, vps_name);
* an old VPS ``pm-<t>-1`` built by the Hostwinds simulator (root: the lab key and the Vault admin key),
  with Mailu's files under /mailu (mailu.env, the DKIM key, the admin account) and the lab's Mailu
  daemons (Debian's Postfix, Dovecot and Rspamd, tests/lab/mail) running from them;
* DNS in the lab zone: ``mail.<domain>`` A -> old IP, ``<domain>`` MX -> ``10 mail.<domain>.``,
  ``dkim._domainkey.<domain>`` TXT.

``lab_vars`` are the extra vars that point the playbook at the lab (DNS server and TSIG key, the
simulator's plan/location/image, the lab's Mailu daemons instead of docker compose); they hold the
TSIG secret, so ``run_migrate`` passes them as a 0600 file (``-e @file``), never on the command line.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import shlex
import subprocess
import sys
import time
import urllib.request
from urllib.parse import urlencode

import dns.query
import dns.rcode
import dns.rdatatype
import dns.message
import dns.tsigkeyring
import dns.update

from tests.lab import hosts as lab_hosts
from tests.lab import mail as lab_mail
from tests.lab.lab import SSH_OPTIONS
from tests.support.ansible_run import REPO, VENV_BIN, ansible_env, ensure_collection_link

ensure_collection_link()
if os.path.join(REPO, "collections") not in sys.path:
    sys.path.insert(0, os.path.join(REPO, "collections"))

# pylint: disable=wrong-import-position
from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store  # noqa: E402
from ansible_collections.penguinmails.vps.plugins.module_utils import tenant_record  # noqa: E402
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client  # noqa: E402

# The lab's Mailu host (start, stop, status; `admin ...` runs the stand-in for Mailu's admin CLI).
SERVICE = lab_mail.HOST_SCRIPT
# Run as an operator would: by the playbooks' fully qualified names, through ./collections.
PLAYBOOK = "penguinmails.vps.migrate"
RECOVER_PLAYBOOK = "penguinmails.vps.recover_smtp"
SIM_PLAN = dict(plan="lab-1", location="lab-dc", image="debian-12")


def host_python():
    """The interpreter that runs the lab's mail scripts inside a lab host (the system python: they need only
    the standard library, so a venv under /root, which a host cannot see, does not matter)."""
    return [lab_mail.HOST_PYTHON]


def vault(desc):
    return vault_client.get_client({"url": desc["vault"]["addr"], "token": desc["vault"]["token"]})


def hostwinds(desc, action, **fields):
    fields.update(action=action, API=desc["hostwinds"]["api_key"])
    request = urllib.request.Request(desc["hostwinds"]["url"], data=urlencode(fields).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def hostwinds_lab(desc, path):
    with urllib.request.urlopen(desc["hostwinds"]["base_url"] + path, timeout=60) as response:
        return json.loads(response.read())


def instances(desc):
    return hostwinds(desc, "get_instances")["success"]


def instances_named(desc, name):
    return [item for item in instances(desc) if item.get("srvrname") == name]


def lab_host_name(desc, serviceid):
    """The lab host (and netns suffix) of a simulator instance."""
    for item in hostwinds_lab(desc, "/lab/state")["instances"]:
        if str(item["serviceid"]) == str(serviceid):
            return item["lab_host"]
    return "hw%s" % serviceid


def netns_names():
    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return [line.split()[0] for line in listing.splitlines() if line.strip()]


# ---------------------------------------------------------------------------------------
# DNS
# ---------------------------------------------------------------------------------------
def dns_zone(desc):
    return desc["dns"]["zones"][0]


def dns_replace(desc, name, rdtype, values, ttl=300):
    info = desc["dns"]
    keyring = dns.tsigkeyring.from_text({info["tsig_name"]: info["tsig_secret"]})
    update = dns.update.UpdateMessage(dns_zone(desc), keyring=keyring, keyalgorithm=info["tsig_algorithm"])
    update.replace(name, ttl, rdtype, *values)
    response = dns.query.tcp(update, info["address"], port=info["port"], timeout=10)
    if response.rcode() != dns.rcode.NOERROR:
        raise RuntimeError("DNS update of %s failed: %s" % (name, dns.rcode.to_text(response.rcode())))


def publish_dkim_txt(desc, domain, value, selector="dkim"):
    """Replace the DKIM TXT RRset of ``domain`` with ``value`` (split into 255-byte strings)."""
    dns_replace(desc, "%s._domainkey.%s." % (selector, domain), "TXT",
                [" ".join('"%s"' % value[i:i + 255] for i in range(0, len(value), 255))])


def dns_query(desc, name, rdtype):
    """The values of an RRset on the lab BIND (TXT strings joined), sorted."""
    info = desc["dns"]
    query = dns.message.make_query(name, getattr(dns.rdatatype, rdtype))
    response = dns.query.tcp(query, info["address"], port=info["port"], timeout=5)
    values = []
    for rrset in response.answer:
        for rdata in rrset:
            values.append(b"".join(rdata.strings).decode() if rdtype == "TXT" else rdata.to_text())
    return sorted(values)


# ---------------------------------------------------------------------------------------
# The tenant
# ---------------------------------------------------------------------------------------
class Tenant(dict):
    """What seed_tenant made: tenant_id, domain, mail_host, old_vps {serviceid, ip, name, lab_host}."""

    @property
    def tenant_id(self):
        return self["tenant_id"]


def _wait_active(desc, name, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = instances_named(desc, name)
        if found and found[0].get("status") == "active" and found[0].get("main_ip"):
            return found[0]
        if found and found[0].get("status") == "failed":
            raise RuntimeError("the simulator failed to build %s" % name)
        time.sleep(0.2)  # polling the simulator's build, not synchronising on time
    raise RuntimeError("%s did not become active within %ss" % (name, timeout))


def seed_tenant(desc, tenant_id=None, domain=None):
    """Seed one tenant with an old VPS (see the module docstring); return a :class:`Tenant`."""
    tenant_id = tenant_id or "t" + secrets.token_hex(3)
    zone = dns_zone(desc)
    domain = domain or "%s.%s" % (tenant_id.lower(), zone)
    mail_host = "mail.%s" % domain
    client = vault(desc)

    # SSH keys (admin and tenant) the way vault_ssh_keypair creates them.
    public = {}
    for role in ("admin", "tenant"):
        store = keypair_store.KeypairStore(client, tenant_id, role)
        planned = store.plan("present", key_type="ed25519")
        store.commit(planned)
        public[role] = (planned.after or planned.before)["public_key"]

    # SMTP admin and DKIM key.
    password = "Pw-" + secrets.token_urlsafe(18)
    client.write("smtp", "%s/admin" % tenant_id, {
        "username": "admin@%s" % domain, "password": password, "webmail_url": "https://%s/webmail" % mail_host})
    dkim_pem = lab_mail.generate_dkim_key(None)
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(dkim_pem, password=None)
    dkim_public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    client.write("dkim", "%s/dkim" % domain, {
        "private_key": dkim_pem.decode(), "public_key": dkim_public,
        "created_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")})

    # The old VPS, built by the simulator with the Vault admin key for root (an SSH key of the account, as at
    # Hostwinds), then the key leaves the account again.
    old_name = "pm-%s-1" % tenant_id
    hostwinds(desc, "add_ssh_key", name="%s-seed" % old_name, ssh_key=public["admin"])
    hostwinds(desc, "add_instance", srvrname=old_name, template=SIM_PLAN["image"], rid=SIM_PLAN["plan"],
              location_id=SIM_PLAN["location"], **{"keys[]": "%s-seed" % old_name})
    old = _wait_active(desc, old_name)
    hostwinds(desc, "delete_ssh_key", name="%s-seed" % old_name)
    old_host = lab_host_name(desc, old["serviceid"])

    # Mailu on the old VPS: files where Mailu has them, the admin account, Mailu's daemons running.
    fs = os.path.join(desc["state_dir"], "hosts", old_host, "fs")
    env_text = "SECRET_KEY=%s\n" % secrets.token_hex(8).upper() + lab_mail.mailu_env(domain, hostname=mail_host)
    lab_hosts.write_file(os.path.join(fs, "mailu", "mailu.env"), env_text, 0o600)
    os.makedirs(os.path.join(fs, "mailu", "dkim"), exist_ok=True)
    lab_mail.write_atomic(os.path.join(fs, "mailu", "dkim", "%s.dkim.key" % domain), dkim_pem)
    run = lab_hosts.host_exec
    for argv in (lab_mail.ADMIN_COMMAND + ["admin", domain, password, "--mode", "update"],
                 shlex.split(lab_mail.START_COMMAND)):
        proc = run(desc["state_dir"], old_host, argv, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            err = proc.stderr.strip()
            raise RuntimeError("seeding the old VPS failed: %s" % (err if len(err) < 900 else err[:400] + " ... " + err[-400:]))

    # DNS, then the tenant record.
    dns_replace(desc, mail_host + ".", "A", [old["main_ip"]])
    dns_replace(desc, domain + ".", "MX", ["10 %s." % mail_host])
    publish_dkim_txt(desc, domain, lab_mail.dkim_txt(dkim_pem))
    store = tenant_record.RecordStore(client, tenant_id)
    planned = store.plan("present", {"domain": domain, "vps_id": old["serviceid"], "vps_ip": old["main_ip"],
                                     "vps_name": old_name, "plan": SIM_PLAN["plan"], "region": SIM_PLAN["location"],
                                     "contact_email": "admin@%s" % domain})
    store.commit(planned)
    return Tenant(tenant_id=tenant_id, domain=domain, mail_host=mail_host, admin_user="admin@%s" % domain,
                  old_vps={"serviceid": old["serviceid"], "ip": old["main_ip"], "name": old_name, "lab_host": old_host})


def lab_vars(desc, tenant):
    """Extra vars that point migrate.yml at the lab (they hold the TSIG secret: pass them as a file)."""
    dns_info = desc["dns"]
    return {
        "migrate_dns_server": dns_info["address"],
        "migrate_dns_port": dns_info["port"],
        "migrate_dns_zone": dns_zone(desc),
        "migrate_dns_key_name": dns_info["tsig_name"],
        "migrate_dns_key_secret": dns_info["tsig_secret"],
        "migrate_dns_key_algorithm": dns_info["tsig_algorithm"],
        "migrate_vps_plan": SIM_PLAN["plan"],
        "migrate_vps_location": SIM_PLAN["location"],
        "migrate_vps_image": SIM_PLAN["image"],
        "migrate_vps_wait_timeout": 120,
        "penguinmails_python_interpreter": "/usr/bin/python3",
        "migrate_verify_validate_certs": False,
        "migrate_verify_fetch_timeout": 20,
        # The tenant's notices go to its own mailbox, delivered by the new VPS's Postfix (a lab stand-in for the
        # company's relay).
        "penguinmails_notify_smtp_host": "{{ migrate_ctx.new_ip }}",
        "penguinmails_notify_smtp_port": 25,
        "penguinmails_notify_security": "none",
        "migrate_mailu_stop_command": lab_mail.STOP_COMMAND,
        "mailu_install_docker": False,
        "mailu_start_command": lab_mail.START_COMMAND,
        "mailu_admin_command": lab_mail.ADMIN_COMMAND,
        "mailu_check_validate_certs": False,
        "mailu_start_timeout": 30,
        "mailu_admin_delay": 1,
    }


def run_migrate(desc, tenant, workdir, reason="compromise", extra_vars=None, **kwargs):
    """Run ansible-playbook penguinmails.vps.migrate for ``tenant`` (CompletedProcess, or Popen with popen=True)."""
    values = {"reason": reason}
    values.update(extra_vars or {})
    return run_lab_playbook(desc, tenant, workdir, PLAYBOOK, values, **kwargs)


def run_lab_playbook(desc, tenant, workdir, playbook, extra_vars=None, audit_file=None, timeout=600, popen=False,
                     args=(), hosts=()):
    """Run a playbook of the collection for ``tenant`` against the lab, with the audit callback on.

    ``args`` go to ansible-playbook (e.g. ``-vvvv``); ``hosts`` ({"name", "ip"}) are added to the inventory,
    reached as root with the lab's controller key.
    """
    ensure_collection_link()
    os.makedirs(workdir, exist_ok=True)
    values = lab_vars(desc, tenant)
    values.update(extra_vars or {})
    vars_file = os.path.join(workdir, "lab-vars.json")
    fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(values, handle)
    inventory = os.path.join(workdir, "inventory.ini")
    with open(inventory, "w") as handle:
        handle.write("localhost ansible_connection=local ansible_python_interpreter=%s\n" % sys.executable)
        for host in hosts:
            handle.write("%s ansible_host=%s ansible_user=root ansible_ssh_private_key_file=%s "
                         "ansible_python_interpreter=/usr/bin/python3 ansible_ssh_common_args='%s'\n"
                         % (host["name"], host["ip"], desc["ssh"]["private_key"], " ".join(SSH_OPTIONS[:4])))
    env = {key: value for key, value in desc["env"].items() if key != "PM_LAB_STATE"}
    env["ANSIBLE_CALLBACKS_ENABLED"] = "penguinmails.vps.audit"
    env["PENGUINMAILS_AUDIT_FILE"] = audit_file or os.path.join(workdir, "audit.jsonl")
    cmd = [os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, playbook,
           "-e", "tenant_id=%s" % tenant.tenant_id, "-e", "@%s" % vars_file] + list(args)
    kwargs = dict(env=ansible_env(env), cwd=REPO, stdin=subprocess.DEVNULL)
    if popen == "pipe":  # read the output as it comes (fault injection at a given task)
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                **kwargs)
    if popen:
        log = open(os.path.join(workdir, "migrate.log"), "ab")
        try:
            return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
        finally:
            log.close()
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kwargs)


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def read_record(desc, tenant_id):
    secret = vault(desc).read_or_none("vps", "%s/record" % tenant_id)
    return secret.data if secret else None


def ssh_with_key(private_key, ip, command, workdir, user="root"):
    """Log in as ``user`` on ``ip`` with exactly ``private_key`` (a 0600 file of the test's own, removed after)."""
    path = os.path.join(workdir, "key-%s" % secrets.token_hex(4))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(private_key)
    try:
        return subprocess.run(["ssh", "-i", path, "-F", "/dev/null", "-o", "IdentityAgent=none"] + SSH_OPTIONS
                              + ["%s@%s" % (user, ip), command],
                              capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(path)


def ssh_admin(desc, tenant_id, ip, command, workdir):
    """Log in as root on ``ip`` with the Vault admin key of the tenant (nothing else offered)."""
    data = vault(desc).read("vps", "%s/admin_ssh" % tenant_id).data
    path = os.path.join(workdir, "admin-key-%s" % secrets.token_hex(4))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(data["private_key"])
    try:
        return subprocess.run(["ssh", "-i", path, "-F", "/dev/null"] + SSH_OPTIONS + ["root@%s" % ip, command],
                              capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    finally:
        os.unlink(path)
