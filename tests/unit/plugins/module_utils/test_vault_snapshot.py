# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vault_snapshot.host_serials: the serials a host's authorized_keys holds for one tenant, as the rotation writes them."""
from __future__ import annotations

from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys
from ansible_collections.penguinmails.vps.plugins.module_utils.vault_snapshot import host_serials

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGsFmXbCNPmA2bdmcEEY2vQz6DnO4Wb9FoQsGhlOOpGX penguinmails:acme:admin"


def test_reads_the_serial_lines_the_rotation_writes_and_only_this_tenants():
    text = authorized_keys.compute("", keys=[KEY], marker="penguinmails:acme:admin", serial=7).after
    text += authorized_keys.compute("", keys=[KEY.replace("acme", "acme2")], marker="penguinmails:acme2:admin",
                                    serial=30).after
    text += "# penguinmails-serial penguinmails:acme:tenant 4\n# penguinmails-serial other:acme:admin 99\n"
    assert host_serials(text, "penguinmails", "acme") == {"admin": 7, "tenant": 4}
    assert host_serials(text, "penguinmails", "acme2") == {"admin": 30}
    assert host_serials(text, "penguinmails", "nobody") == {}


def test_ignores_malformed_lines_and_keeps_the_highest():
    text = ("# penguinmails-serial penguinmails:acme:admin x\n# penguinmails-serial penguinmails:acme:admin 3 extra\n"
            "# penguinmails-serial penguinmails:acme:admin 5\n# penguinmails-serial penguinmails:acme:admin 2\n")
    assert host_serials(text, "penguinmails", "acme") == {"admin": 5}
