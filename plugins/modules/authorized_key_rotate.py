#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: authorized_key_rotate
short_description: Set the managed SSH keys of a user, with grace periods sshd enforces itself
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Sets the exact set of managed keys in a user's C(authorized_keys) file on the managed host.
  - Current keys (O(keys)) are written without an expiry. Grace keys (O(grace_keys)), for example
    the previous key after a rotation, are written with C(expiry-time="YYYYMMDDHHMMZ") (UTC, rounded
    up to the minute, the value M(penguinmails.vps.vault_ssh_keypair) returns as C(grace_expiry_time)),
    so sshd refuses them once the grace period ends even if no job runs again. A grace key whose expiry has passed is removed.
  - Revoked keys (O(revoked_keys)) are removed. With O(marker), every key line whose comment starts
    with the marker and whose key is no longer listed is removed too, so keys that left Vault
    disappear from the host without being named.
  - Lines are recognised by their key blob, the way sshd reads the file (options such as
    C(from="a,b") and C(command="echo \"x\"") are understood). Blank lines, comments, unparseable
    lines and keys the module does not manage are kept byte for byte, unless O(exclusive=true).
  - Every key is validated before anything is touched; a malformed key fails the task with a
    one-line message and changes nothing.
  - The file is written atomically (temporary file in the same directory, then rename), owned by the
    user with mode 0600; C(~/.ssh) is kept at mode 0700. Symlinks at C(~/.ssh) or at the file are
    refused, so a user cannot redirect the write.
  - Runs on the managed host; needs only the Python standard library there.
options:
  user:
    description:
      - The account whose C(authorized_keys) is managed, for example V(root) or V(tenant-0a1b2c3d).
    type: str
    required: true
  keys:
    description:
      - Public keys that must be valid now, each C([options] type base64 [comment]).
      - Options given here (for example C(from="10.0.0.0/8")) are written on the line; an
        C(expiry-time) option is dropped, current keys never expire.
    type: list
    elements: str
    default: []
  grace_keys:
    description:
      - Keys that stay valid until their expiry, for example the previous key after a rotation
        (C(grace_public_key) and C(grace_until) in Vault).
    type: list
    elements: dict
    default: []
    suboptions:
      key:
        description:
          - The public key.
        type: str
        required: true
      expires:
        description:
          - When the key stops working, ISO 8601 (V(2026-11-24T10:00:00Z); without a zone it is
            taken as UTC) or OpenSSH C(YYYYMMDDHHMM[Z]). Defaults to O(grace_until).
        type: str
  grace_until:
    description:
      - Expiry for the entries of O(grace_keys) that do not set their own C(expires).
    type: str
  revoked_keys:
    description:
      - Public keys to remove wherever they appear in the file.
      - A key may not be listed both here and in O(keys) or O(grace_keys).
    type: list
    elements: str
    default: []
  marker:
    description:
      - A word (no spaces), for example V(penguinmails:t1:admin), put at the start of the comment of
        every managed line.
      - Key lines whose comment starts with the marker and whose key is in neither O(keys) nor
        O(grace_keys) are removed.
    type: str
    aliases: [comment]
  exclusive:
    description:
      - Remove every key line that is not managed, and every line that is not a valid key line,
        blank line or comment.
    type: bool
    default: false
  serial:
    description:
      - The version of the key set (for example the KV version of the Vault record the keys come from);
        needs O(marker). The file remembers the highest serial applied for the marker (a comment line
        C(# penguinmails-serial <marker> <serial>)); a request with a lower serial changes nothing and
        returns RV(stale=true), so a run that read Vault before another run rotated the key cannot put
        the older keys back.
    type: int
  owner:
    description:
      - The tenant the account belongs to. A user created by O(manage_user) carries it in its GECOS field
        (C(penguinmails tenant <owner>)). An existing account that belongs to another tenant (by its
        GECOS field, or by keys of another tenant's marker in its file) is refused with a clear error;
        two tenants never share an account.
    type: str
  missing_user:
    description:
      - What to do when O(user) does not exist and O(manage_user=false). V(fail), or V(ignore) (nothing
        to do, RV(user_missing=true)), for example to clean up an account that may be gone.
    type: str
    choices: [fail, ignore]
    default: fail
  manage_user:
    description:
      - Create O(user) if it does not exist, with a home directory, its own group and O(shell).
        Its password field is C(*) (no password can match, yet the account is not locked, so key
        logins also work when sshd runs with C(UsePAM no)). Without it a missing user fails the task.
    type: bool
    default: false
  shell:
    description:
      - Login shell for a user created by O(manage_user).
    type: str
    default: /bin/bash
  path:
    description:
      - Manage this file instead of C(~user/.ssh/authorized_keys) (for an C(AuthorizedKeysFile)
        outside the home). Its directory must exist and is left as it is; the file is still owned by
        O(user) with mode 0600.
    type: path
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.platform
attributes:
  check_mode:
    support: full
    details: Reports what would change; writes nothing and creates no user.
  diff_mode:
    support: full
    details: Shows the file before and after (public keys only).
notes:
  - Key lines are compared by key blob; a managed line is rewritten when its options or comment
    differ from what the module would write. Order is kept; new keys are appended.
  - Running the module again with the same input changes nothing (until a grace key expires, when
    its line is removed).
seealso:
  - module: ansible.posix.authorized_key
  - name: sshd AUTHORIZED_KEYS FILE FORMAT
    description: The key options, among them expiry-time.
    link: https://man.openbsd.org/sshd#AUTHORIZED_KEYS_FILE_FORMAT
"""

EXAMPLES = r"""
- name: Rotate the admin key of a tenant VPS; the old key works for 24 more hours
  penguinmails.vps.authorized_key_rotate:
    user: root
    keys:
      - "{{ new_admin_public_key }}"
    grace_keys:
      - key: "{{ old_admin_public_key }}"
        expires: "{{ grace_until }}"
    marker: "penguinmails:t1:admin"

- name: Give the tenant account its key, creating the account if needed
  penguinmails.vps.authorized_key_rotate:
    user: tenant-0a1b2c3d
    manage_user: true
    keys:
      - "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBZ1r2WRp2jcz+ySH9HfauuRZAgwJQY4lE4PwXS3wxXz tenant@t1"
    marker: "penguinmails:t1:tenant"

- name: Revoke a key at once
  penguinmails.vps.authorized_key_rotate:
    user: tenant-0a1b2c3d
    revoked_keys:
      - "{{ compromised_public_key }}"
"""

RETURN = r"""
path:
  description: The file managed.
  returned: always
  type: str
  sample: /root/.ssh/authorized_keys
user_created:
  description: Whether the user was (or in check mode would be) created.
  returned: always
  type: bool
  sample: false
added:
  description: Managed keys that were not in the file.
  returned: always
  type: list
  elements: dict
  sample: [{"fingerprint": "SHA256:vSSYC3/xBJ26FWxlh0BIrBYgD84IMSyssyUX52/shSM", "key_type": "ssh-ed25519",
            "comment": "penguinmails:t1:admin"}]
updated:
  description: Managed lines rewritten in place (expiry set or cleared, options or comment changed), with their line number.
  returned: always
  type: list
  elements: dict
  sample: [{"fingerprint": "SHA256:vSSYC3/xBJ26FWxlh0BIrBYgD84IMSyssyUX52/shSM", "key_type": "ssh-ed25519",
            "comment": "penguinmails:t1:admin", "line": 3}]
removed:
  description:
    - Lines removed, with their line number and reason (V(revoked), V(expired), V(no longer listed),
      V(duplicate), V(exclusive)).
  returned: always
  type: list
  elements: dict
  sample: [{"fingerprint": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "key_type": "ssh-ed25519",
            "comment": "old", "line": 2, "reason": "revoked"}]
user_missing:
  description: O(user) does not exist and O(missing_user=ignore); nothing was done.
  returned: always
  type: bool
stale:
  description: The file already holds the keys of a higher O(serial); nothing was changed.
  returned: always
  type: bool
serial:
  description: The serial the file holds for the marker after the run (none without O(serial)).
  returned: always
  type: int
expiring:
  description: Grace keys in the file and when sshd stops accepting them.
  returned: always
  type: list
  elements: dict
  sample: [{"fingerprint": "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU", "expires": "2026-11-24T10:44:00Z",
            "expiry_time": "202611241044Z"}]
uid:
  description: Numeric owner id of the file RV(path), as Ansible adds it to a result naming a file that exists.
  returned: when the file RV(path) exists
  type: int
  sample: 0
gid:
  description: Numeric group id of the file RV(path).
  returned: when the file RV(path) exists
  type: int
  sample: 0
owner:
  description: Owner of the file RV(path).
  returned: when the file RV(path) exists
  type: str
  sample: root
group:
  description: Group of the file RV(path).
  returned: when the file RV(path) exists
  type: str
  sample: root
mode:
  description: Permissions of the file RV(path), in octal.
  returned: when the file RV(path) exists
  type: str
  sample: "0600"
size:
  description: Size of the file RV(path) in bytes.
  returned: when the file RV(path) exists
  type: int
  sample: 387
state:
  description: V(file), the kind of the file RV(path).
  returned: when the file RV(path) exists
  type: str
  sample: file
"""

import os
import pwd
import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.penguinmails.vps.plugins.module_utils import authorized_keys as ak


def main():
    module = AnsibleModule(
        argument_spec=dict(
            user=dict(type="str", required=True),
            keys=dict(type="list", elements="str", default=[], no_log=False),
            grace_keys=dict(
                type="list",
                elements="dict",
                default=[],
                no_log=False,
                options=dict(key=dict(type="str", required=True, no_log=False), expires=dict(type="str")),
            ),
            grace_until=dict(type="str"),
            revoked_keys=dict(type="list", elements="str", default=[], no_log=False),
            marker=dict(type="str", aliases=["comment"]),
            exclusive=dict(type="bool", default=False),
            manage_user=dict(type="bool", default=False),
            serial=dict(type="int"),
            missing_user=dict(type="str", default="fail", choices=["fail", "ignore"]),
            owner=dict(type="str"),
            shell=dict(type="str", default="/bin/bash"),
            path=dict(type="path"),
        ),
        supports_check_mode=True,
    )
    params = module.params
    grace = [dict(key=g["key"], expires=g["expires"] or params["grace_until"]) for g in params["grace_keys"]]
    try:
        user = ak.validate_user(params["user"])
        # Validate every key before looking at the host: bad input changes nothing.
        ak.compute("", params["keys"], grace, params["revoked_keys"], params["marker"], params["exclusive"],
                   serial=params["serial"])
        if params["owner"] is not None and not GECOS_OWNER_RE.match(params["owner"]):
            raise ak.AuthorizedKeysError("invalid owner %r: a tenant id" % params["owner"])
    except ak.AuthorizedKeysError as exc:
        module.fail_json(msg=str(exc))

    try:
        with ak.host_lock():
            result = update(module, params, user, grace)
    except ak.AuthorizedKeysError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(**result)


GECOS_PREFIX = "penguinmails tenant "
GECOS_OWNER_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}\Z")


def account(module, params, user):
    """The account's passwd entry (created with manage_user); refuses one of another tenant."""
    owner = params["owner"]
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        if not params["manage_user"]:
            if params["missing_user"] == "ignore":
                return None, False
            module.fail_json(msg="user %s does not exist (set manage_user: true to create it)" % user)
        argv = ["useradd", "--create-home", "--user-group", "--password", "*", "--shell", params["shell"]]
        if owner:
            argv += ["--comment", GECOS_PREFIX + owner]
        if module.check_mode:
            return pwd.struct_passwd((user, "x", 0, 0, "", os.path.join("/home", user), params["shell"])), True
        module.run_command(argv + ["--", user], check_rc=True)
        return pwd.getpwnam(user), True
    if owner and entry.pw_gecos != GECOS_PREFIX + owner:
        if entry.pw_gecos.startswith(GECOS_PREFIX) or entry.pw_gecos.strip():
            module.fail_json(msg="account %s belongs to %r, not to tenant %s: refusing to share it" % (user, entry.pw_gecos, owner))
    return entry, False


def update(module, params, user, grace):
    entry, user_created = account(module, params, user)
    if entry is None:
        return dict(changed=False, user_missing=True, user_created=False, added=[], updated=[], removed=[], expiring=[],
                    stale=False, serial=None, path=params["path"])
    path = params["path"] or os.path.join(entry.pw_dir, ".ssh", "authorized_keys")
    try:
        with ak.KeyFile(path, entry.pw_uid, entry.pw_gid, ssh_dir=not params["path"]) as keyfile:
            if params["owner"] and not user_created:
                foreign = ak.foreign_markers(keyfile.before, params["marker"])
                if foreign:
                    module.fail_json(msg="account %s holds keys of %s, not of tenant %s: refusing to share it"
                                     % (user, ", ".join(foreign), params["owner"]), path=path)
            plan = ak.compute(keyfile.before, params["keys"], grace, params["revoked_keys"], params["marker"], params["exclusive"],
                              serial=params["serial"])
            # Write when the content changes, or to fix owner/mode of a file that exists or will.
            write = not plan.stale and (plan.changed or (keyfile.needs_fix() and (keyfile.file_stat is not None or bool(plan.after))))
            if write and not module.check_mode:
                keyfile.write(plan.after)
    except ak.AuthorizedKeysError as exc:
        module.fail_json(msg=str(exc), path=path)
    adopted = bool(params["owner"]) and not user_created and entry.pw_gecos != GECOS_PREFIX + params["owner"]
    if adopted and not module.check_mode:
        module.run_command(["usermod", "--comment", GECOS_PREFIX + params["owner"], "--", user], check_rc=True)
    serial = plan.serial_before if plan.stale else params["serial"]
    result = dict(changed=user_created or write or adopted, path=path, user_created=user_created, user_missing=False, added=plan.added,
                  updated=plan.updated, removed=plan.removed, expiring=plan.expiring, stale=plan.stale, serial=serial)
    if module._diff:
        result["diff"] = dict(before=plan.before, after=plan.after, before_header=path, after_header=path)
    return result


if __name__ == "__main__":
    main()
