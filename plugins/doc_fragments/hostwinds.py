# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options shared by every module that talks to the Hostwinds Cloud API.
    DOCUMENTATION = r"""
options:
  api_key:
    description:
      - Hostwinds Cloud API key.
      - Falls back to the E(HOSTWINDS_API_KEY) environment variable. One of the two is required.
      - Never logged, returned or shown in an error message.
    type: str
  api_url:
    description:
      - URL of the Hostwinds Cloud API endpoint.
      - Falls back to E(HOSTWINDS_API_URL), then to V(https://clients.hostwinds.com/cloud/api.php).
      - The lab's simulator listens on C(http://127.0.0.1:PORT/cloud/api.php).
    type: str
  api_timeout:
    description:
      - Seconds to wait for one HTTP request to the API.
    type: int
    default: 30
  api_retries:
    description:
      - How often a read (C(get_instances), C(get_instance), C(get_instance_ips)) is retried after
        a transport error or HTTP 429/5xx, with exponential back-off.
      - Other actions are retried only when the connection was refused, that is when the request
        cannot have reached the API. C(add_instance) is never retried.
    type: int
    default: 3
requirements:
  - requests (Python library)
notes:
  - The API answers errors with HTTP 200 and C(result=error); every answer is checked, and a
    refused API key fails the task with a one-line message before anything is changed.
"""
