# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # The attributes every module documents. A module extends penguinmails.vps.attributes and sets, for
    # check_mode and diff_mode, only `support` (full, partial, none) and its own `details`:
    #   extends_documentation_fragment:
    #     - penguinmails.vps.attributes
    #   attributes:
    #     check_mode:
    #       support: full
    #       details: Reports what would change; writes nothing.
    #     diff_mode:
    #       support: none
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
"""

    # A module that only reads (the _info modules, audit_verify): use together with the fragment above.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action only reads; it runs the same in check mode.
  diff_mode:
    support: N/A
    details:
      - This action only reads; there is nothing to compare.
"""

    # A module that runs on the managed host (the tenant's VPS), not only on the controller.
    PLATFORM = r"""
options: {}
attributes:
  platform:
    description: Target OS/families that can be operated against.
    support: full
    platforms: posix
"""

    # A module with an action plugin (plugins/action/<name>.py) that runs on the controller.
    ACTION = r"""
options: {}
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
"""

    # Every module that talks to Vault: a member of the action group penguinmails.vps.vault (meta/runtime.yml).
    ACTION_GROUP = r"""
options: {}
attributes:
  action_group:
    description: Use C(group/penguinmails.vps.vault) in C(module_defaults) to set the Vault connection options of this module once for a play.
    support: full
    membership:
      - penguinmails.vps.vault
"""
