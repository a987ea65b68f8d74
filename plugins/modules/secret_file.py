#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: secret_file
short_description: Write a file that holds a secret on the managed host, atomically, without a copy on the controller
version_added: 0.2.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Writes O(content) (a private key, an env file with a password) to O(dest) on the managed host, through a temporary file in
    the same directory, created with O(mode), synced, then renamed over O(dest). A reader never sees a partial file and
    the secret is never readable with a wider mode, not even for a moment.
  - Unlike M(ansible.builtin.copy) and M(ansible.builtin.template), which first write the content to a temporary file
    on the controller, the content travels only inside the module's arguments. With pipelining (the collection's
    playbooks turn it on for the hosts they add), nothing of it is written to a disk outside O(dest).
  - Changes nothing when the file already holds O(content) with the requested owner and mode. Refuses a symlink at
    O(dest).
options:
  dest:
    description:
      - The file to write. Its directory must exist.
    type: path
    required: true
  content:
    description:
      - What the file must hold. Never logged.
    type: str
    required: true
  mode:
    description:
      - The file's mode, as an octal string.
    type: str
    default: "0600"
  owner:
    description:
      - The file's owner (name); default the user the module runs as.
    type: str
  group:
    description:
      - The file's group (name); default the owner's primary group.
    type: str
extends_documentation_fragment:
  - penguinmails.vps.attributes
  - penguinmails.vps.attributes.platform
attributes:
  check_mode:
    support: full
    details: Reports whether the file would change; writes nothing.
  diff_mode:
    support: none
    details: The content is a secret and is never shown.
  platform:
    details: Runs on the managed host; needs only the Python standard library.
"""

EXAMPLES = r"""
- name: Install a DKIM private key
  penguinmails.vps.secret_file:
    dest: /mailu/dkim/example.com.dkim.key
    content: "{{ dkim_private_key }}"
    mode: "0600"
  no_log: true
"""

RETURN = r"""
dest:
  description: The file written.
  returned: always
  type: str
  sample: /mailu/dkim/example.com.dkim.key
uid:
  description: Numeric owner id of O(dest), as Ansible adds it to a result naming a file that exists.
  returned: when O(dest) exists
  type: int
  sample: 0
gid:
  description: Numeric group id of O(dest).
  returned: when O(dest) exists
  type: int
  sample: 0
owner:
  description: Owner of O(dest).
  returned: when O(dest) exists
  type: str
  sample: root
group:
  description: Group of O(dest).
  returned: when O(dest) exists
  type: str
  sample: root
mode:
  description: Permissions of O(dest), in octal.
  returned: when O(dest) exists
  type: str
  sample: "0600"
size:
  description: Size of O(dest) in bytes.
  returned: when O(dest) exists
  type: int
  sample: 387
state:
  description: V(file), the kind of O(dest).
  returned: when O(dest) exists
  type: str
  sample: file
"""

import grp
import os
import pwd
import stat

from ansible.module_utils.basic import AnsibleModule


def current(dest):
    """(content bytes, stat) of ``dest`` without following a symlink; (None, None) when missing."""
    try:
        fd = os.open(dest, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == 2:
            return None, None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(21, "not a regular file")
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks), st
    finally:
        os.close(fd)


def write(dest, data, mode, uid, gid):
    directory = os.path.dirname(dest) or "."
    tmp = os.path.join(directory, ".%s.%s.tmp" % (os.path.basename(dest), os.urandom(6).hex()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        try:
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            content=dict(type="str", required=True, no_log=True),
            mode=dict(type="str", default="0600"),
            owner=dict(type="str"),
            group=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    try:
        mode = int(p["mode"], 8)
        if not 0 <= mode <= 0o7777:
            raise ValueError()
    except ValueError:
        module.fail_json(msg="secret_file: mode must be an octal string such as 0600, not %r" % p["mode"])
    try:
        uid = pwd.getpwnam(p["owner"]).pw_uid if p["owner"] else os.geteuid()
        gid = grp.getgrnam(p["group"]).gr_gid if p["group"] else pwd.getpwuid(uid).pw_gid
    except KeyError as exc:
        module.fail_json(msg="secret_file: no such user or group: %s" % exc)
    data = p["content"].encode("utf-8")
    try:
        before, st = current(p["dest"])
    except OSError as exc:
        module.fail_json(msg="secret_file: cannot read %s: %s" % (p["dest"], exc.strerror))
    same = before == data and st is not None and stat.S_IMODE(st.st_mode) == mode and st.st_uid == uid and st.st_gid == gid
    if not same and not module.check_mode:
        try:
            write(p["dest"], data, mode, uid, gid)
        except OSError as exc:
            module.fail_json(msg="secret_file: cannot write %s: %s" % (p["dest"], exc.strerror))
    module.exit_json(changed=not same, dest=p["dest"])


if __name__ == "__main__":
    main()
