# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection and authentication options shared by every module that talks to Vault.
    # The environment fallbacks are resolved by module_utils.vault_client, the same way for
    # modules and plugins.
    DOCUMENTATION = r"""
options:
  url:
    description:
      - URL of the Vault (or OpenBao) server, for example V(https://vault.example.com:8200).
      - Falls back to the E(VAULT_ADDR) environment variable.
    type: str
    aliases: [vault_addr]
  token:
    description:
      - Vault token, used when O(auth_method=token).
      - Falls back to E(VAULT_TOKEN), then to the file C(~/.vault-token).
    type: str
  namespace:
    description:
      - Vault Enterprise namespace. Falls back to E(VAULT_NAMESPACE).
    type: str
  ca_cert:
    description:
      - Path to a CA bundle to verify the server certificate. Falls back to E(VAULT_CACERT).
    type: path
    aliases: [cacert]
  validate_certs:
    description:
      - Verify the server's TLS certificate.
      - When not set, E(VAULT_SKIP_VERIFY=true) turns verification off; otherwise it is on.
    type: bool
  timeout:
    description:
      - Seconds to wait for one HTTP request.
    type: int
    default: 10
  retries:
    description:
      - How often a read is retried after HTTP 412, 429 or 5xx or a transport error, with
        exponential back-off. Writes are retried only when the connection was refused, that is
        when the request cannot have reached Vault.
    type: int
    default: 3
  auth_method:
    description:
      - How to log in. V(token) uses O(token); V(approle) uses O(role_id) and O(secret_id);
        V(jwt) uses O(jwt) and O(jwt_role) (for example the JWT an AWX/AAP job receives).
      - Falls back to E(VAULT_AUTH_METHOD), then V(token).
      - The login happens once per process and settings and is reused by every later call.
    type: str
    choices: [token, approle, jwt]
  auth_mount:
    description:
      - Mount path of the auth method. Defaults to V(approle) or V(jwt). Falls back to E(VAULT_AUTH_MOUNT).
    type: str
  role_id:
    description:
      - AppRole role id. Falls back to E(VAULT_ROLE_ID).
    type: str
  secret_id:
    description:
      - AppRole secret id. Falls back to E(VAULT_SECRET_ID).
    type: str
  jwt:
    description:
      - The JSON Web Token for O(auth_method=jwt). Falls back to E(VAULT_JWT).
    type: str
  jwt_role:
    description:
      - The Vault role to log in to with O(jwt). Falls back to E(VAULT_JWT_ROLE).
    type: str
requirements:
  - hvac >= 1.2 (Python library)
  - requests (Python library)
notes:
  - Tokens, secret ids and JWTs are never logged, returned or shown in error messages.
"""

    # The same options for plugins (lookup): Ansible variables may set them as well.
    PLUGINS = r"""
options:
  url:
    description:
      - URL of the Vault (or OpenBao) server, for example V(https://vault.example.com:8200).
    type: str
    env:
      - name: VAULT_ADDR
    vars:
      - name: penguinmails_vault_url
  token:
    description:
      - Vault token, used when O(auth_method=token). Falls back to the file C(~/.vault-token).
    type: str
    env:
      - name: VAULT_TOKEN
    vars:
      - name: penguinmails_vault_token
  namespace:
    description:
      - Vault Enterprise namespace.
    type: str
    env:
      - name: VAULT_NAMESPACE
    vars:
      - name: penguinmails_vault_namespace
  ca_cert:
    description:
      - Path to a CA bundle to verify the server certificate.
    type: path
    env:
      - name: VAULT_CACERT
    vars:
      - name: penguinmails_vault_ca_cert
  validate_certs:
    description:
      - Verify the server's TLS certificate.
      - When not set, E(VAULT_SKIP_VERIFY=true) turns verification off; otherwise it is on.
    type: bool
    vars:
      - name: penguinmails_vault_validate_certs
  timeout:
    description:
      - Seconds to wait for one HTTP request.
    type: int
    default: 10
    vars:
      - name: penguinmails_vault_timeout
  retries:
    description:
      - How often a read is retried after HTTP 412, 429 or 5xx or a transport error, with
        exponential back-off.
    type: int
    default: 3
    vars:
      - name: penguinmails_vault_retries
  auth_method:
    description:
      - How to log in; see O(token), O(role_id)/O(secret_id) and O(jwt)/O(jwt_role).
      - The login happens once per process and settings and is reused by every later call and term.
    type: str
    choices: [token, approle, jwt]
    default: token
    env:
      - name: VAULT_AUTH_METHOD
    vars:
      - name: penguinmails_vault_auth_method
  auth_mount:
    description:
      - Mount path of the auth method. Defaults to V(approle) or V(jwt).
    type: str
    env:
      - name: VAULT_AUTH_MOUNT
    vars:
      - name: penguinmails_vault_auth_mount
  role_id:
    description:
      - AppRole role id.
    type: str
    env:
      - name: VAULT_ROLE_ID
    vars:
      - name: penguinmails_vault_role_id
  secret_id:
    description:
      - AppRole secret id.
    type: str
    env:
      - name: VAULT_SECRET_ID
    vars:
      - name: penguinmails_vault_secret_id
  jwt:
    description:
      - The JSON Web Token for O(auth_method=jwt).
    type: str
    env:
      - name: VAULT_JWT
    vars:
      - name: penguinmails_vault_jwt
  jwt_role:
    description:
      - The Vault role to log in to with O(jwt).
    type: str
    env:
      - name: VAULT_JWT_ROLE
    vars:
      - name: penguinmails_vault_jwt_role
requirements:
  - hvac >= 1.2 (Python library)
  - requests (Python library)
notes:
  - Tokens, secret ids and JWTs are never logged, returned or shown in error messages.
"""
