#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: ssh_login_failures_info
short_description: Failed SSH logins from a host's sshd log
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Parses the sshd log of the host - C(Failed publickey), C(Failed password) and other
    C(Failed <method>) lines, C(Invalid user) lines and C(maximum authentication attempts
    exceeded) - and returns the failures with their counts per source address and per user.
  - Understands classic syslog (C(/var/log/auth.log)), ISO timestamps (rsyslog high precision,
    C(journalctl -o short-iso)) and the untimed lines of C(sshd -E file).
  - Returns nothing secret - user names, addresses, ports, methods and public key fingerprints.
  - The report playbook turns the result into V(ssh_login_failed) audit events.
options:
  path:
    description:
      - Log files to read, in order (rotated files first if wanted). Missing files are reported in
        RV(missing), not as an error.
    type: list
    elements: path
    default: [/var/log/auth.log]
  since:
    description:
      - Only failures at or after this ISO 8601 time (lines without a time are always kept).
    type: str
  max_entries:
    description:
      - Return at most this many failures (the newest); counts always cover all of them.
    type: int
    default: 200
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.info_module
  - penguinmails.vps.attributes.platform
attributes:
  platform:
    details: Runs on the managed host; needs only the Python standard library.
notes:
  - Reading C(/var/log/auth.log) usually needs C(become). On hosts that log only to the journal,
    export it first, for example C(journalctl -u ssh -o short-iso > /var/tmp/sshd.log).
  - C(Failed publickey) is logged at sshd's C(INFO) level only for invalid users and repeated
    failures; set C(LogLevel VERBOSE) in C(sshd_config) to see every refused key.
"""

EXAMPLES = r"""
- name: Failed SSH logins of the last day
  penguinmails.vps.ssh_login_failures_info:
    since: "{{ '%Y-%m-%dT%H:%M:%SZ' | strftime(now(utc=true).timestamp() - 86400, utc=true) }}"
  become: true
  register: ssh_failures

- name: Audit them
  penguinmails.vps.audit_event:
    action: ssh_login_failed
    status: failure
    tenant_id: "{{ tenant_id }}"
    details:
      count: "{{ ssh_failures.count }}"
      sources: "{{ ssh_failures.sources }}"
  when: ssh_failures.count > 0
"""

RETURN = r"""
count:
  description: Number of failures found.
  returned: success
  type: int
  sample: 3
sources:
  description: Failures per source address.
  returned: success
  type: dict
  sample: {"198.51.100.4": 3}
users:
  description: Failures per user name.
  returned: success
  type: dict
  sample: {"root": 2, "bob": 1}
invalid_user_count:
  description: C(Invalid user) lines.
  returned: success
  type: int
failed_publickey_count:
  description: C(Failed publickey) lines.
  returned: success
  type: int
failures:
  description:
    - The failures (newest O(max_entries)) - time (ISO 8601 UTC or null), kind (failed, invalid_user,
      max_attempts), method, user, invalid_user, ip, port, key_type, fingerprint.
  returned: success
  type: list
  elements: dict
truncated:
  description: Whether RV(failures) was cut to O(max_entries).
  returned: success
  type: bool
files:
  description: The files that were read.
  returned: success
  type: list
  elements: str
missing:
  description: The files of O(path) that do not exist.
  returned: success
  type: list
  elements: str
"""

import io
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils.sshd_log import parse_lines
from ansible_collections.penguinmails.vps.plugins.module_utils.key_health import parse_time


def _read_lines(paths):
    for path in paths:
        with io.open(path, "r", encoding="utf-8", errors="replace") as handle:
            yield from handle


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="list", elements="path", default=["/var/log/auth.log"]),
            since=dict(type="str"),
            max_entries=dict(type="int", default=200),
        ),
        supports_check_mode=True,
    )
    p = module.params
    since = None
    if p["since"]:
        since = parse_time(p["since"])
        if since is None:
            module.fail_json(msg="invalid since %r: use an ISO 8601 time such as 2026-11-22T00:00:00Z" % p["since"][:40])
    files = [path for path in p["path"] if os.path.exists(path)]
    missing = [path for path in p["path"] if not os.path.exists(path)]
    try:
        result = parse_lines(_read_lines(files), since=since, max_entries=max(0, p["max_entries"]))
    except (IOError, OSError) as exc:
        module.fail_json(msg="cannot read the sshd log: %s" % (exc.strerror or type(exc).__name__))
    module.exit_json(changed=False, files=files, missing=missing, **result)


if __name__ == "__main__":
    main()
