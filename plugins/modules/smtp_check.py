#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: smtp_check
short_description: Verify a mail server end to end (SMTP AUTH, probe delivery, DKIM signature)
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Connects to a mail server on the submission port, secures the connection with STARTTLS (587) or
    implicit TLS (465) and logs in with SMTP AUTH.
  - With STARTTLS, the server must refuse SMTP AUTH before the connection is secured. It must not offer AUTH,
    and C(AUTH PLAIN) (sent without credentials) must get a 5xx reply; a server that accepts it fails the
    V(tls) stage.
  - Then sends a probe message with a unique Message-ID from the account to itself, fetches it back
    over IMAPS and verifies its DKIM signature with dkimpy against the key published in DNS at
    C(<selector>._domainkey.<domain>) (TXT, split strings joined).
  - Every stage (V(connect), V(tls), V(auth), V(send), V(fetch), V(dkim)) is reported in RV(stages).
    The module fails at the first failed stage with a one-line message that names it.
  - The password is never returned or shown, not even when a server echoes it.
options:
  host:
    description:
      - Host name or IP address of the mail server, for example the new VPS's address before DNS points to it.
    type: str
    required: true
  port:
    description:
      - SMTP submission port.
    type: int
    default: 587
  security:
    description:
      - V(starttls) upgrades a plain connection with STARTTLS (required before AUTH); V(tls) speaks TLS from
        the first byte (SMTPS).
      - Default V(tls) when O(port=465), else V(starttls).
    type: str
    choices: [starttls, tls]
  username:
    description:
      - The account to log in as, for example V(admin@example.com). The probe is sent from and to this address.
    type: str
    required: true
  password:
    description:
      - The account's password.
    type: str
    required: true
  validate_certs:
    description:
      - Verify the server's TLS certificate and its name (O(tls_server_name)).
      - Set to V(false) only for a lab or a server with a self-signed certificate.
    type: bool
    default: true
  ca_cert:
    description:
      - A CA bundle (PEM) to verify the certificate with, instead of the system's.
    type: path
  tls_server_name:
    description:
      - The name to send as SNI and to check the certificate against. Defaults to O(host); set it to the mail
        host name when O(host) is an IP address.
    type: str
  timeout:
    description:
      - Seconds to wait for each network operation (SMTP, IMAP, DNS).
    type: int
    default: 10
  imap_host:
    description:
      - IMAPS server to fetch the probe from. Defaults to O(host).
    type: str
  imap_port:
    description:
      - IMAPS (implicit TLS) port.
    type: int
    default: 993
  fetch_timeout:
    description:
      - Seconds to wait for the probe to arrive in the INBOX.
    type: int
    default: 30
  verify_dkim:
    description:
      - Verify the probe's DKIM signature. With V(false) the V(dkim) stage is skipped.
    type: bool
    default: true
  dkim_domain:
    description:
      - The domain the signature must be made for (C(d=)). Defaults to the domain of O(username).
    type: str
  dkim_selector:
    description:
      - When set, the signature must use this selector (C(s=)).
    type: str
  dns_server:
    description:
      - Address or name of the DNS server to read the DKIM key from, for example the zone's primary, so that
        a key published a moment ago is seen without waiting for caches. Default is the system resolver.
    type: str
  dns_port:
    description:
      - Port of O(dns_server).
    type: int
    default: 53
  ehlo_name:
    description:
      - The name to announce in EHLO. Default is this machine's fully qualified name.
    type: str
extends_documentation_fragment:
  - penguinmails.vps.attributes
attributes:
  check_mode:
    support: full
    details: In check mode only the V(connect), V(tls) and V(auth) stages run; no probe is sent.
  diff_mode:
    support: none
    details: The module changes nothing it manages.
notes:
  - The module changes nothing it manages, so it never reports C(changed); a successful run leaves one probe
    message in the account's INBOX.
  - The V(dkim) stage needs the Python libraries dkimpy and dnspython where the module runs; check mode
    and O(verify_dkim=false) do not.
requirements:
  - dkimpy (Python library, for the dkim stage)
  - dnspython (Python library, for the dkim stage)
"""

EXAMPLES = r"""
- name: Verify the new VPS before switching DNS (lab certificate, lab DNS server)
  penguinmails.vps.smtp_check:
    host: 198.18.0.10
    port: 587
    username: admin@example.com
    password: "{{ smtp_admin.password }}"
    validate_certs: false
    dns_server: 127.0.0.1
    dns_port: 5353
  no_log: true

- name: Check SMTPS on 465 with a verified certificate
  penguinmails.vps.smtp_check:
    host: "{{ new_vps_ip }}"
    port: 465
    tls_server_name: mail.example.com
    username: admin@example.com
    password: "{{ smtp_admin.password }}"

- name: Only test the login (what the mailu role does before resetting a password)
  penguinmails.vps.smtp_check:
    host: mail.example.com
    username: admin@example.com
    password: "{{ smtp_admin.password }}"
  check_mode: true
  register: login
  failed_when: false
"""

RETURN = r"""
stages:
  description:
    - One entry per stage, in the order they run. C(status) is V(ok), V(error) or V(skipped); C(msg) says
      what happened.
  returned: always
  type: dict
  sample:
    connect: {status: ok, msg: "198.18.0.10:587 answered mail.example.com ESMTP"}
    tls: {status: ok, msg: "STARTTLS with TLSv1.3; AUTH before STARTTLS refused (530 5.7.0 Must issue a STARTTLS command first)"}
    auth: {status: ok, msg: "authenticated as admin@example.com"}
    send: {status: ok, msg: "probe <...@example.com> accepted for admin@example.com"}
    fetch: {status: ok, msg: "probe <...@example.com> found in the INBOX of admin@example.com (1234 bytes)"}
    dkim: {status: ok, msg: "signature d=example.com s=dkim verified against TXT dkim._domainkey.example.com"}
failed_stage:
  description: The stage that failed, or null.
  returned: always
  type: str
  sample: auth
server:
  description: The SMTP server checked, C(host:port).
  returned: always
  type: str
  sample: 198.18.0.10:587
security:
  description: The TLS mode used.
  returned: always
  type: str
  sample: starttls
message_id:
  description: The Message-ID of the probe, or null when none was sent.
  returned: always
  type: str
  sample: <170000.1.smtp-check-0f1e@example.com>
dkim:
  description: What the DKIM stage found (empty when it did not run).
  returned: always
  type: dict
  contains:
    domain:
      description: The signing domain (C(d=)).
      type: str
    selector:
      description: The selector (C(s=)).
      type: str
    dns_name:
      description: The DNS name the key was read from.
      type: str
    verified:
      description: Whether the signature verified against the key in DNS.
      type: bool
  sample: {domain: example.com, selector: dkim, dns_name: dkim._domainkey.example.com, verified: true}
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import mail_check


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", required=True),
            port=dict(type="int", default=587),
            security=dict(type="str", choices=list(mail_check.SECURITY_MODES)),
            username=dict(type="str", required=True),
            password=dict(type="str", required=True, no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_cert=dict(type="path"),
            tls_server_name=dict(type="str"),
            timeout=dict(type="int", default=10),
            imap_host=dict(type="str"),
            imap_port=dict(type="int", default=993),
            fetch_timeout=dict(type="int", default=30),
            verify_dkim=dict(type="bool", default=True),
            dkim_domain=dict(type="str"),
            dkim_selector=dict(type="str"),
            dns_server=dict(type="str"),
            dns_port=dict(type="int", default=53),
            ehlo_name=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    params = dict(module.params)
    send_probe = not module.check_mode
    if send_probe and params["verify_dkim"]:
        if not mail_check.HAS_DKIM:
            module.fail_json(msg=missing_required_lib("dkimpy"), exception=str(mail_check.DKIM_IMPORT_ERROR))
        if not mail_check.HAS_DNSPYTHON:
            module.fail_json(msg=missing_required_lib("dnspython"), exception=str(mail_check.DNSPYTHON_IMPORT_ERROR))
    result = mail_check.MailCheck(send_probe=send_probe, **params).run()
    if result.pop("failed"):
        module.fail_json(changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
