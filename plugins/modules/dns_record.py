#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: dns_record
short_description: Manage A, AAAA, MX, TXT and CNAME records with dynamic DNS updates (RFC 2136) and TSIG
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Adds, changes or removes one RRset on a primary DNS server (BIND, Knot, PowerDNS, ...) with a dynamic
    update (RFC 2136) signed with a TSIG key.
  - The module first reads the current RRset from the server itself (no recursion, the query is signed with
    the key too) and sends an update only when something differs, so a second run reports C(changed=false).
  - The update carries prerequisites that pin the RRset as it was read. If another client changed it in the
    meantime the server refuses the whole update, nothing is changed and the module fails; run it again.
  - B(TXT records are never replaced as a whole.) With O(state=present) the given TXT values are added and all
    other TXT records at the name (SPF, DMARC, other DKIM keys, verification tokens) stay. With O(state=absent)
    only the given TXT values are removed.
  - TXT values longer than 255 bytes, such as DKIM keys of 2048 or 4096 bits, are split into character-strings
    of 255 bytes, always at the same places. Values are compared after joining their character-strings, so a
    record that another tool split differently still counts as the same value.
  - For the other types O(state=present) makes the RRset hold exactly O(values) (see O(replace)).
  - Names and values are checked before anything is sent; errors are one line and never contain the secret.
options:
  zone:
    description:
      - The zone to update, for example V(example.com). The server must be authoritative for it.
    type: str
    required: true
  record:
    description:
      - The name of the record, relative to O(zone) (V(www), V(dkim._domainkey), V(@) for the zone apex), or
        absolute with a trailing dot (V(www.example.com.)).
      - A name without a trailing dot that already ends with O(zone) (V(www.example.com)) is taken as absolute.
    type: str
    required: true
    aliases: [name]
  type:
    description:
      - The record type.
    type: str
    required: true
    choices: [A, AAAA, MX, TXT, CNAME]
  values:
    description:
      - The record values. A - IPv4 addresses; AAAA - IPv6 addresses; MX - V(PREFERENCE HOST), for example
        V(10 mail.example.com.); CNAME - one host name; TXT - the text itself, without quotes, of any length.
      - Host names in MX and CNAME values are always absolute; the trailing dot may be left out.
      - Required with O(state=present), and with O(state=absent) for TXT.
      - With O(state=absent) and no O(values) the whole RRset is removed (not allowed for TXT).
    type: list
    elements: str
    aliases: [value]
  ttl:
    description:
      - The TTL of the RRset in seconds. When left out an existing RRset keeps its TTL and a new one gets 3600.
      - The TTL belongs to the whole RRset, also to the other TXT values at the name.
    type: int
  state:
    description:
      - V(present) makes the values exist, V(absent) makes them (or the whole non-TXT RRset) go away.
    type: str
    choices: [present, absent]
    default: present
  replace:
    description:
      - Only with O(state=present). V(true) makes the RRset hold exactly O(values) and removes other values
        of the same type at the name. V(false) only adds O(values) and keeps the others.
      - Defaults to V(true) for A, AAAA, MX and CNAME. TXT is always handled value by value, V(true) is refused
        for TXT.
    type: bool
  server:
    description:
      - The primary server to update, an IP address or host name.
    type: str
    required: true
  port:
    description:
      - The DNS port of O(server).
    type: int
    default: 53
  protocol:
    description:
      - Transport for the queries and the update. With V(udp) a truncated answer is repeated over TCP.
    type: str
    choices: [tcp, udp]
    default: tcp
  key_name:
    description:
      - The name of the TSIG key. Leave out, together with O(key_secret), only for a server that accepts
        unsigned updates.
    type: str
  key_secret:
    description:
      - The TSIG secret, base64 encoded, as in the C(secret) line of a BIND key statement.
    type: str
  key_algorithm:
    description:
      - The TSIG algorithm.
    type: str
    choices: [hmac-sha256, hmac-sha384, hmac-sha512, hmac-sha224, hmac-sha1, hmac-md5]
    default: hmac-sha256
  timeout:
    description:
      - Seconds to wait for each answer of the server.
    type: int
    default: 10
extends_documentation_fragment:
  - penguinmails.vps.attributes
attributes:
  check_mode:
    support: full
    details: Reads the RRset and reports what would change; sends no update.
  diff_mode:
    support: full
    details: Shows the RRset before and after in zone-file form.
requirements:
  - dnspython >= 2.4
notes:
  - A CNAME cannot share its name with other records. If the server ignores a part of the update for that
    reason the module fails, naming what the RRset now holds.
seealso:
  - name: RFC 2136 Dynamic Updates in the Domain Name System
    description: The update protocol this module speaks.
    link: https://www.rfc-editor.org/rfc/rfc2136
  - name: RFC 8945 Secret Key Transaction Authentication for DNS (TSIG)
    description: How updates are signed.
    link: https://www.rfc-editor.org/rfc/rfc8945
"""

EXAMPLES = r"""
- name: Point mail.example.com at the new VPS
  penguinmails.vps.dns_record:
    server: ns1.example.com
    zone: example.com
    record: mail
    type: A
    values: ["{{ vps_ip }}"]
    ttl: 300
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"

- name: Mail exchanger
  penguinmails.vps.dns_record:
    server: 192.0.2.53
    zone: example.com
    record: "@"
    type: MX
    values: ["10 mail.example.com."]
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"

- name: Publish a DKIM key (4096-bit keys are split into 255-byte strings); other TXT records stay
  penguinmails.vps.dns_record:
    server: 192.0.2.53
    zone: example.com
    record: dkim._domainkey
    type: TXT
    values: ["v=DKIM1; k=rsa; p={{ dkim_public_key_base64 }}"]
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"

- name: Remove one TXT value, keep the others at the name
  penguinmails.vps.dns_record:
    server: 192.0.2.53
    zone: example.com
    record: "@"
    type: TXT
    values: ["old-verification-token"]
    state: absent
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"

- name: Add a second address without touching the first
  penguinmails.vps.dns_record:
    server: 192.0.2.53
    zone: example.com
    record: www
    type: AAAA
    values: ["2001:db8::2"]
    replace: false
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"
    key_algorithm: hmac-sha512

- name: Remove the whole A RRset of an old host
  penguinmails.vps.dns_record:
    server: 192.0.2.53
    zone: example.com
    record: old-mail
    type: A
    state: absent
    key_name: pm-update
    key_secret: "{{ tsig_secret }}"
"""

RETURN = r"""
zone:
  description: The zone, lower case, without the trailing dot.
  returned: success
  type: str
  sample: example.com
record:
  description: The absolute name of the record.
  returned: success
  type: str
  sample: dkim._domainkey.example.com.
type:
  description: The record type.
  returned: success
  type: str
  sample: TXT
before:
  description: The RRset as read from the server before the change. TXT values are shown joined.
  returned: success
  type: dict
  contains:
    ttl:
      description: The TTL, null when the RRset did not exist.
      type: int
      sample: 3600
    values:
      description: The values, sorted.
      type: list
      elements: str
      sample: ["v=spf1 mx -all"]
  sample: {"ttl": 3600, "values": ["v=spf1 mx -all"]}
after:
  description: The RRset after the change (in check mode, as it would be).
  returned: success
  type: dict
  contains:
    ttl:
      description: The TTL, null when the RRset is gone.
      type: int
      sample: 3600
    values:
      description: The values, sorted.
      type: list
      elements: str
      sample: ["v=DKIM1; k=rsa; p=MIIB...", "v=spf1 mx -all"]
  sample: {"ttl": 3600, "values": ["v=DKIM1; k=rsa; p=MIIB...", "v=spf1 mx -all"]}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils.dns_update import (
    DNSPYTHON_IMPORT_ERROR,
    HAS_DNSPYTHON,
    SUPPORTED_TYPES,
    TSIG_ALGORITHMS,
    DnsClient,
    DnsUpdateError,
    ensure_record,
)
from ansible_collections.penguinmails.vps.plugins.module_utils.validators import ValidationError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            zone=dict(type="str", required=True),
            record=dict(type="str", required=True, aliases=["name"]),
            type=dict(type="str", required=True, choices=list(SUPPORTED_TYPES)),
            values=dict(type="list", elements="str", aliases=["value"]),
            ttl=dict(type="int"),
            state=dict(type="str", choices=["present", "absent"], default="present"),
            replace=dict(type="bool"),
            server=dict(type="str", required=True),
            port=dict(type="int", default=53),
            protocol=dict(type="str", choices=["tcp", "udp"], default="tcp"),
            key_name=dict(type="str", no_log=False),
            key_secret=dict(type="str", no_log=True),
            key_algorithm=dict(type="str", choices=list(TSIG_ALGORITHMS), default="hmac-sha256"),
            timeout=dict(type="int", default=10),
        ),
        required_together=[("key_name", "key_secret")],
        supports_check_mode=True,
    )
    if not HAS_DNSPYTHON:
        module.fail_json(msg=missing_required_lib("dnspython"), exception=str(DNSPYTHON_IMPORT_ERROR))

    params = module.params
    try:
        client = DnsClient(
            params["server"], port=params["port"], key_name=params["key_name"], key_secret=params["key_secret"],
            key_algorithm=params["key_algorithm"], timeout=params["timeout"], protocol=params["protocol"],
        )
        result = ensure_record(
            client, params["zone"], params["record"], params["type"], values=params["values"], ttl=params["ttl"],
            state=params["state"], replace=params["replace"], check_mode=module.check_mode,
        )
    except (ValidationError, DnsUpdateError) as exc:
        module.fail_json(msg=str(exc))

    diff = result.pop("diff")
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
