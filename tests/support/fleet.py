# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Many lab hosts with many tenants, for the slicing test and the scale benchmarks.

    fleet = Fleet(lab_desc, work_dir)              # lab_desc: the lab description (tests.lab.lab.up / the lab fixture)
    fleet.create_hosts(60)                         # real sshd hosts in network namespaces, made in parallel
    fleet.seed_tenants(200)                        # tenant i on host i % 60: record (vps_ip), admin and tenant keys
    fleet.bootstrap()                              # root on every host accepts its tenants' Vault admin keys, nothing else
    fleet.invariant_violations()                   # tenants whose current admin record logs in as root on no key
    fleet.destroy()

Tenants live under a private KV v2 mount of their own (``fleet.mount``), so nothing another test of the session
wrote is touched, and a fleet's hosts have names of their own (``<prefix>NNN``): tests look only at their own lab's
names. Keys are Ed25519 (cheap to make) and due: their ``last_rotated`` is long ago.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.penguinmails.vps.plugins.module_utils import keypair_store, ssh_keys
from ansible_collections.penguinmails.vps.plugins.module_utils import vault_client as vc
from tests.lab import hosts as lab_hosts

OLD = "2020-01-01T00:00:00Z"
SSH_PROBE = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
             "-o", "LogLevel=ERROR"]


class Fleet(object):
    """Lab hosts, the tenants on them (round robin) and the checks of the reachability invariant."""

    def __init__(self, desc, work, prefix=None, mount=None):
        self.desc, self.work = desc, str(work)
        self.state_dir = desc["state_dir"]
        self.prefix = prefix or "f%s" % uuid.uuid4().hex[:4]
        self.mount = mount or "vpsfleet%s" % uuid.uuid4().hex[:6]
        self.client = vc.get_client({"url": desc["vault"]["addr"], "token": desc["vault"]["token"]})
        self.hosts = []        # the lab hosts' descriptions, sorted by name
        self.tenants = {}      # tenant id -> host description
        self.probe_dir = os.path.join(self.work, "probe-keys")
        os.makedirs(self.probe_dir, mode=0o700, exist_ok=True)
        self.lab_public_key = desc["ssh"]["public_key_text"]
        self._mounted = False

    # -- hosts ------------------------------------------------------------------------------------------------
    def create_hosts(self, count, workers=4):
        """``count`` lab hosts named ``<prefix>000``... (root accepts the lab key until bootstrap())."""
        names = ["%s%03d" % (self.prefix, number) for number in range(count)]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            made = list(pool.map(lambda name: lab_hosts.create_host(self.state_dir, name, [self.lab_public_key]), names))
        self.hosts = sorted(self.hosts + made, key=lambda host: host["name"])
        return made

    def destroy(self):
        for host in self.hosts:
            lab_hosts.destroy_host(self.state_dir, host["name"])
        self.hosts = []

    # -- tenants ----------------------------------------------------------------------------------------------
    def ensure_mount(self):
        if not self._mounted:
            self.client.hvac.sys.enable_secrets_engine("kv", path=self.mount, options={"version": "2"})
            self._mounted = True

    def seed_tenants(self, count, roles=("admin", "tenant"), last_rotated=OLD, workers=8):
        """``count`` tenants, tenant i on host i % len(hosts), each with a record and due Ed25519 keys."""
        self.ensure_mount()
        start = len(self.tenants)
        plan = [("%st%04d" % (self.prefix, start + number), self.hosts[(start + number) % len(self.hosts)])
                for number in range(count)]

        def seed_one(item):
            tenant, host = item
            self.client.write(self.mount, "%s/record" % tenant,
                              {"vps_ip": host["ip"], "vps_name": host["name"], "domain": "%s.example.test" % tenant}, cas=0)
            for role in roles:
                pair = ssh_keys.generate_keypair("ed25519", comment="penguinmails-%s-%s" % (tenant, role))
                record = keypair_store.record_created(pair, keypair_store.utcnow(), 90)
                record["last_rotated"] = last_rotated
                self.client.write(self.mount, "%s/%s_ssh" % (tenant, role), record, cas=0)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            list(pool.map(seed_one, plan))
        for tenant, host in plan:
            self.tenants[tenant] = host
        return [tenant for tenant, _host in plan]

    def tenants_of(self, host_name):
        return sorted(tenant for tenant, host in self.tenants.items() if host["name"] == host_name)

    def bootstrap(self):
        """Root on every host accepts exactly its tenants' current Vault admin keys (the lab key goes), so whether a
        key of the current record logs in is decided by sshd alone."""
        for host in self.hosts:
            lines = []
            for tenant in self.tenants_of(host["name"]):
                public = self.admin_record(tenant).data["public_key"]
                lines.append("%s penguinmails:%s:admin" % (public.rsplit(" ", 1)[0], tenant))
            path = os.path.join(host["root"], "fs", "root", ".ssh", "authorized_keys")
            lab_hosts.write_file(path, "\n".join(lines) + ("\n" if lines else ""), 0o600)

    # -- checks -----------------------------------------------------------------------------------------------
    def admin_record(self, tenant):
        return self.client.read(self.mount, "%s/admin_ssh" % tenant)

    def can_login(self, private_key, user, ip):
        path = os.path.join(self.probe_dir, uuid.uuid4().hex)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(private_key)
        try:
            result = subprocess.run(["ssh", "-i", path] + SSH_PROBE + ["%s@%s" % (user, ip), "true"], capture_output=True,
                                    timeout=90, stdin=subprocess.DEVNULL, check=False,
                                    env={k: v for k, v in os.environ.items() if k != "SSH_AUTH_SOCK"})
            return result.returncode == 0
        finally:
            os.unlink(path)

    def invariant_violations(self, workers=8):
        """Tenants for which no private key of the current admin record logs in as root on their host."""

        def violated(tenant):
            data = self.admin_record(tenant).data
            keys = [data[field] for field in keypair_store.PRIVATE_FIELDS if data.get(field)]
            return not any(self.can_login(key, "root", self.tenants[tenant]["ip"]) for key in keys)

        tenants = sorted(self.tenants)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return [tenant for tenant, bad in zip(tenants, pool.map(violated, tenants)) if bad]

    def versions(self, role="admin"):
        """{tenant: current KV version of its ``role`` key}."""
        return {tenant: int(self.client.metadata(self.mount, "%s/%s_ssh" % (tenant, role))["current_version"])
                for tenant in sorted(self.tenants)}

    def memory(self):
        """What the fleet's hosts hold in memory: the PSS of every process in their network namespaces (kB) and
        the count of those processes."""
        pss, processes = 0, 0
        for host in self.hosts:
            for pid in lab_hosts.netns_pids(host["netns"]):
                try:
                    with open("/proc/%d/smaps_rollup" % pid) as handle:
                        for line in handle:
                            if line.startswith("Pss:"):
                                pss += int(line.split()[1])
                                break
                except OSError:
                    continue
                processes += 1
        return {"pss_kb": pss, "processes": processes}
