#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: notify_mail
short_description: Send a plain-text notification mail through a relay, with verified TLS
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Sends one mail, for example the notice to a tenant that its SSH key was rotated or its VPS migrated.
  - TLS is verified by default (the system's CAs, or O(ca_path)); credentials are never sent over a
    connection that is not encrypted (O(security=none) with O(username) is refused).
  - Needs only the Python standard library; the collection needs no other collection to notify.
options:
  host:
    description:
      - The SMTP relay.
    type: str
    default: localhost
  port:
    description:
      - The relay's port. Defaults to 587 for V(starttls), 465 for V(tls), 25 for V(none).
    type: int
  security:
    description:
      - V(starttls) (the relay must offer STARTTLS), V(tls) (implicit TLS) or V(none) (a local relay).
    type: str
    choices: [starttls, tls, none]
    default: starttls
  username:
    description:
      - Login at the relay (only over TLS).
    type: str
  password:
    description:
      - Password for O(username).
    type: str
  validate_certs:
    description:
      - Verify the relay's certificate and name.
    type: bool
    default: true
  ca_path:
    description:
      - A CA bundle to verify the relay's certificate with.
    type: path
  tls_server_name:
    description:
      - The name the relay's certificate must carry, when O(host) is an address.
    type: str
  sender:
    description:
      - The From address.
    type: str
    required: true
  to:
    description:
      - The recipients.
    type: list
    elements: str
    required: true
  subject:
    description:
      - The subject.
    type: str
    required: true
  body:
    description:
      - The plain-text body.
    type: str
    required: true
  timeout:
    description:
      - Seconds to wait for the relay.
    type: int
    default: 30
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.platform
attributes:
  check_mode:
    support: full
    details: Sends nothing in check mode.
  diff_mode:
    support: none
    details: Nothing to compare.
  platform:
    details: Runs where the task runs, normally the controller (delegate_to localhost).
"""

EXAMPLES = r"""
- name: Tell the tenant
  penguinmails.vps.notify_mail:
    host: smtp.example.com
    username: notifier
    password: "{{ relay_password }}"
    sender: ops@example.com
    to: [admin@acme.example]
    subject: Your SSH key was rotated
    body: "..."
  delegate_to: localhost
"""

RETURN = r"""
refused:
  description: Recipients the relay refused (the others were accepted).
  returned: always
  type: list
  elements: str
accepted:
  description: Recipients the relay accepted.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.penguinmails.vps.plugins.module_utils import mailer


def main():
    module = AnsibleModule(
        argument_spec=dict(
            host=dict(type="str", default="localhost"),
            port=dict(type="int"),
            security=dict(type="str", default="starttls", choices=list(mailer.SECURITY)),
            username=dict(type="str"),
            password=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            tls_server_name=dict(type="str"),
            sender=dict(type="str", required=True),
            to=dict(type="list", elements="str", required=True),
            subject=dict(type="str", required=True),
            body=dict(type="str", required=True),
            timeout=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    p = module.params
    recipients = [address.strip() for address in p["to"] if address and address.strip()]
    if not recipients:
        module.fail_json(msg="notify_mail: no recipient")
    if module.check_mode:
        module.exit_json(changed=True, accepted=recipients, refused=[])
    try:
        message = mailer.build(p["sender"], recipients, p["subject"], p["body"])
        refused = mailer.send(message, p["host"], p["port"], p["security"], p["username"], p["password"],
                              p["validate_certs"], p["ca_path"], p["timeout"], p["tls_server_name"])
    except mailer.MailError as exc:
        module.fail_json(msg="notify_mail: %s" % exc)
    module.exit_json(changed=True, accepted=[r for r in recipients if r not in refused], refused=sorted(refused))


if __name__ == "__main__":
    main()
