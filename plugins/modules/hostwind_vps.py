#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, penguinmails.vps developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: hostwind_vps
short_description: Create, find, power and terminate Hostwinds cloud VPS instances by name
version_added: 0.1.0
author:
  - penguinmails.vps developers (@penguinmails)
description:
  - Manages one Hostwinds cloud instance through the Hostwinds Cloud API.
  - The identity of an instance is its server name O(name) (the API's C(srvrname)). The API's
    C(add_instance) returns no id, so the module always looks the name up first with
    C(get_instances), and fails if two instances share the name instead of guessing.
  - C(add_instance) is called at most once per run and never when an instance of that name
    exists, also while it is still building. A run that timed out waiting for the build can
    simply be rerun; it finds the building instance and waits for it.
  - If the answer to C(add_instance) is lost (a transport error after the request was sent),
    the module does not repeat it; it looks for the instance by name instead.
options:
  name:
    description:
      - Server name of the instance (C(srvrname)), for example V(pm-tenant1-1).
      - 1-63 letters, digits, C(.), C(_) or C(-), starting with a letter or digit.
    type: str
    required: true
  state:
    description:
      - V(present) creates the instance if no instance has O(name).
      - V(absent) terminates it (and all its data).
      - V(started) and V(stopped) make sure it exists (V(started) creates it when missing) and
        boot or shut it down if needed. V(stopped) fails if there is no such instance.
      - V(rebooted) reboots an existing instance (always reported as changed).
    type: str
    choices: [present, absent, started, stopped, rebooted]
    default: present
  plan:
    description:
      - The Hostwinds plan (product id, the API's C(rid)) of a new instance.
      - Required to create an instance; ignored for an existing one.
    type: str
  location:
    description:
      - The location id (the API's C(location_id)) of a new instance.
      - Required to create an instance. If an existing instance is elsewhere, the module warns
        and does not move it.
    type: str
  image:
    description:
      - The template (image) of a new instance, the API's C(template).
      - Required to create an instance; ignored for an existing one.
    type: str
  ssh_keys:
    description:
      - Names of SSH keys stored in the Hostwinds account (see M(penguinmails.vps.hostwind_ssh_key)) to
        install for root on a new instance (the API's C(keys[])). Public keys themselves are refused by the API.
    type: list
    elements: str
  billing_cycle:
    description:
      - Billing cycle of a new instance (the API's C(billingcycle)), for example V(monthly)
        or V(hourly). The account's default when not set.
    type: str
  wait:
    description:
      - Wait until a new instance is C(active) with an IP address, until a terminated one is
        gone, and until a power change has taken effect.
      - V(started), V(stopped) and V(rebooted) always wait for a building instance to finish.
    type: bool
    default: true
  wait_timeout:
    description:
      - Seconds to wait when O(wait=true). When they run out the task fails, naming the
        instance; a rerun goes on waiting without creating anything.
    type: int
    default: 600
  failed_build:
    description:
      - What to do with an instance of O(name) whose build failed (found failed, or failing while the
        module waits for it).
      - V(fail) fails the task, naming the instance.
      - V(terminate) terminates it, waits until it is gone, and returns RV(build_failed=true) without failing,
        so the caller can order a replacement (penguinmails.vps.migrate does, under a new server name); a
        failed build never blocks a rerun and never stays billed.
    type: str
    choices: [fail, terminate]
    default: fail
extends_documentation_fragment:
  - penguinmails.vps.hostwinds
  - penguinmails.vps.attributes
attributes:
  check_mode:
    support: full
    details: Reports what would change without calling any action that changes something.
  diff_mode:
    support: full
    details: Shows the instance's presence and power state before and after.
notes:
  - Two runs started at the same moment for the same new name can both create an instance;
    every later run then fails with both serviceids named, so the duplicate can be removed.
seealso:
  - name: Hostwinds Cloud API
    description: The API this module speaks.
    link: https://developers.hostwinds.com/cloud/
"""

EXAMPLES = r"""
- name: Provision the tenant's VPS (idempotent by name)
  penguinmails.vps.hostwind_vps:
    name: "pm-{{ tenant_id }}-1"
    plan: "1"
    location: "2"
    image: debian-12
    wait_timeout: 900
  register: vps

- name: Use its address
  ansible.builtin.debug:
    msg: "{{ vps.serviceid }} at {{ vps.main_ip }}"

- name: Terminate the old VPS
  penguinmails.vps.hostwind_vps:
    name: "pm-{{ tenant_id }}-0"
    state: absent

- name: Talk to the lab simulator instead of Hostwinds
  penguinmails.vps.hostwind_vps:
    name: pm-lab-1
    plan: "1"
    location: "1"
    image: debian-12
    api_url: http://127.0.0.1:8080/cloud/api.php
  environment:
    HOSTWINDS_API_KEY: "{{ lab_api_key }}"
"""

RETURN = r"""
serviceid:
  description: The instance's serviceid; null when there is none (state absent, or check mode before a create).
  returned: always
  type: int
  sample: 100123
main_ip:
  description: The instance's main IPv4 address; empty while it is building.
  returned: always
  type: str
  sample: 198.18.0.12
status:
  description: The instance's status (C(active) when built), or C(absent).
  returned: always
  type: str
  sample: active
build_failed:
  description: The instance's build had failed and it was terminated (O(failed_build=terminate)).
  returned: always
  type: bool
failed_serviceid:
  description: The serviceid of the failed instance that was terminated.
  returned: when RV(build_failed=true)
  type: int
instance:
  description: The instance as the API last showed it (no passwords).
  returned: when an instance exists
  type: dict
  contains:
    serviceid:
      description: The serviceid.
      type: int
    srvrname:
      description: The server name.
      type: str
    hostname:
      description: The host name Hostwinds gave the instance.
      type: str
    main_ip:
      description: The main IPv4 address.
      type: str
    status:
      description: The service status.
      type: str
    vm_state:
      description: The power state of the VM, for example C(active), C(stopped), C(building).
      type: str
    task_state:
      description: The task under way, if any.
      type: str
    power_state:
      description: The numeric power state.
      type: int
    location_id:
      description: The location id.
      type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule, env_fallback, missing_required_lib

from ansible_collections.penguinmails.vps.plugins.module_utils import hostwinds as hw

LIST_TIMEOUT = 60


def _state_of(instance):
    if not instance:
        return {"state": "absent"}
    return {"state": "present", "vm_state": instance.get("vm_state"), "status": instance.get("status")}


def _check_create_options(module, name):
    missing = [option for option in ("plan", "location", "image") if not module.params[option]]
    if missing:
        module.fail_json(msg="no instance named %s exists; to create it set %s" % (name, ", ".join(missing)))


def _create(module, client, name):
    params = module.params
    try:
        client.add_instance(
            name, template=params["image"], rid=params["plan"], location_id=params["location"],
            keys=params["ssh_keys"], billingcycle=params["billing_cycle"],
        )
    except hw.HostwindsTransportError as exc:
        # The order may have reached Hostwinds: never repeat it, look for it by name.
        try:
            return client.wait_listed(name, LIST_TIMEOUT)
        except hw.HostwindsTimeout:
            module.fail_json(
                msg="add_instance for %s got no answer (%s) and no instance of that name is listed; "
                "check the Hostwinds panel before rerunning" % (name, exc),
                changed=True,
            )
    try:
        return client.wait_listed(name, LIST_TIMEOUT)
    except hw.HostwindsTimeout:
        module.fail_json(
            msg="Hostwinds accepted add_instance for %s but does not list it after %ss; rerun later: "
            "it will not be created again once it is listed" % (name, LIST_TIMEOUT),
            changed=True,
        )


def _power(module, client, instance, state):
    """Bring an existing instance to ``state``; return (changed, instance)."""
    sid = instance["serviceid"]
    if str(instance.get("status")).lower() != hw.ACTIVE:
        instance = client.wait_active(sid, module.params["wait_timeout"])
    running = str(instance.get("vm_state")).lower() == "active"
    if state == "started" and running or state == "stopped" and not running:
        return False, instance
    if module.check_mode:
        return True, instance
    want = {"started": "active", "stopped": "stopped", "rebooted": "active"}[state]
    {"started": client.boot, "stopped": client.shutdown, "rebooted": client.reboot}[state](sid)
    if module.params["wait"]:

        def reached():
            current = client.get_instance(sid)
            return current if str(current.get("vm_state")).lower() == want and not current.get("task_state") else None

        return True, client.wait_for(reached, module.params["wait_timeout"], "instance %s to be %s" % (sid, want))
    return True, client.get_instance(sid)


def _failed(instance):
    status = str((instance or {}).get("status") or "").lower()
    return status in hw.FAILED_STATES or str((instance or {}).get("vm_state") or "").lower() == "error"


def _terminate_failed(module, client, name, instance, before):
    """Terminate the failed build of ``name`` and report it (O(failed_build=terminate))."""
    if not module.check_mode:
        client.terminate(instance["serviceid"])
        client.wait_gone(name, module.params["wait_timeout"])
    module.exit_json(
        changed=True, serviceid=None, main_ip="", status="terminated", build_failed=True,
        failed_serviceid=instance["serviceid"],
        msg="the build of %s (serviceid %s) had failed: it was terminated" % (name, instance["serviceid"]),
        diff=dict(before=dict(before, name=name), after=dict(state="absent", name=name)),
    )


def run(module, client):
    params = module.params
    name = hw.validate_name(params["name"])
    state = params["state"]
    instance = client.find_by_name(name)
    before = _state_of(instance)
    changed = False
    if state != "absent" and instance and _failed(instance) and params["failed_build"] == "terminate":
        _terminate_failed(module, client, name, instance, before)

    if state == "absent":
        if instance:
            changed = True
            if not module.check_mode:
                client.terminate(instance["serviceid"])
                if params["wait"]:
                    client.wait_gone(name, params["wait_timeout"])
            instance = None
    elif instance is None and state in ("stopped", "rebooted"):
        module.fail_json(msg="cannot make %s %s: no instance of that name exists" % (name, state))
    else:
        if instance is None:
            changed = True
            _check_create_options(module, name)
            if module.check_mode:
                module.exit_json(
                    changed=True, serviceid=None, main_ip="", status="absent", build_failed=False,
                    diff=dict(before=dict(before, name=name), after=dict(state="present", name=name)),
                )
            instance = _create(module, client, name)
        elif params["location"] and str(instance.get("location_id")) != str(params["location"]):
            module.warn("instance %s is in location %s, not %s; it is not moved" % (name, instance.get("location_id"), params["location"]))
        if state in ("started", "stopped", "rebooted"):
            try:
                power_changed, instance = _power(module, client, instance, state)
            except hw.HostwindsTimeout as exc:
                module.fail_json(msg=str(exc), changed=changed, serviceid=instance["serviceid"])
            changed = changed or power_changed
        elif params["wait"] and not (str(instance.get("status")).lower() == hw.ACTIVE and instance.get("main_ip")):
            try:
                instance = client.wait_active(instance["serviceid"], params["wait_timeout"])
            except hw.HostwindsBuildFailed as exc:
                if params["failed_build"] == "terminate":
                    _terminate_failed(module, client, name, client.find_by_name(name) or instance, before)
                module.fail_json(msg=str(exc), changed=changed, serviceid=instance["serviceid"], status=instance.get("status"))
            except hw.HostwindsTimeout as exc:
                module.fail_json(msg=str(exc), changed=changed, serviceid=instance["serviceid"], status=instance.get("status"))

    result = dict(
        changed=changed,
        build_failed=False,
        serviceid=instance["serviceid"] if instance else None,
        main_ip=(instance.get("main_ip") or "") if instance else "",
        status=instance.get("status") if instance else "absent",
        diff=dict(before=dict(before, name=name), after=dict(_state_of(instance), name=name)),
    )
    if instance:
        result["instance"] = hw.instance_summary(instance)
    module.exit_json(**result)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type="str", required=True),
            state=dict(type="str", default="present", choices=["present", "absent", "started", "stopped", "rebooted"]),
            plan=dict(type="str"),
            location=dict(type="str"),
            image=dict(type="str"),
            ssh_keys=dict(type="list", elements="str", no_log=False),
            billing_cycle=dict(type="str"),
            wait=dict(type="bool", default=True),
            wait_timeout=dict(type="int", default=600),
            failed_build=dict(type="str", default="fail", choices=["fail", "terminate"]),
            api_key=dict(type="str", no_log=True, fallback=(env_fallback, ["HOSTWINDS_API_KEY"])),
            api_url=dict(type="str", fallback=(env_fallback, ["HOSTWINDS_API_URL"])),
            api_timeout=dict(type="int", default=30),
            api_retries=dict(type="int", default=3),
        ),
        supports_check_mode=True,
    )
    if not hw.HAS_REQUESTS:
        module.fail_json(msg=missing_required_lib("requests"))
    params = module.params
    if params["wait_timeout"] <= 0:
        module.fail_json(msg="wait_timeout must be a positive number of seconds")
    try:
        client = hw.HostwindsClient(
            params["api_url"] or os.environ.get("HOSTWINDS_API_URL") or hw.DEFAULT_API_URL,
            params["api_key"], timeout=params["api_timeout"], retries=params["api_retries"],
        )
        run(module, client)
    except hw.HostwindsError as exc:
        module.fail_json(msg=str(exc))


if __name__ == "__main__":
    main()
