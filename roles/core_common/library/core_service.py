#!/usr/bin/python
"""Control the core service through systemd or explicit argv commands."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_service
short_description: Start, stop, restart or probe the core service (systemd or commands)
description:
  - One interface for both service managers, so roles do not branch on the manager.
  - With I(manager=command) the argv lists run without a shell; the status command's
    exit status 0 means running.
  - I(state=checked) never changes or fails; it reports C(reachable) (the unit is loaded /
    the status command could be run) and C(active), polling up to I(wait) seconds for the
    service to become active and then requiring it to stay active for I(settle) seconds.
  - C(changed) comes from observed state - starting an active service is not a change.
  - The commands (and so the app started by I(manager=command)) get only PATH, HOME, TZ
    and the locale variables of the module's environment - never a token that the
    caller of ansible-playbook had in its environment, nor Ansible's own settings.
options:
  manager: {type: str, choices: [systemd, command], default: systemd}
  name: {type: str, default: dunebugger, description: systemd unit}
  start_command: {type: list, elements: str}
  stop_command: {type: list, elements: str}
  status_command: {type: list, elements: str}
  state: {type: str, choices: [started, stopped, restarted, checked], required: true}
  wait: {type: float, default: 0}
  settle: {type: float, default: 0}
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule

SERVICE_ENVIRONMENT = ("PATH", "HOME", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES")


def narrow_environment():
    """Keep only SERVICE_ENVIRONMENT. The module is a short-lived process of its own and
    run_command starts every command from os.environ, so this is what the app inherits."""
    for name in set(os.environ).difference(SERVICE_ENVIRONMENT):
        del os.environ[name]


class Service:
    def __init__(self, module):
        self.module = module
        params = module.params
        self.manager = params["manager"]
        if self.manager == "systemd":
            unit = params["name"]
            self.commands = {
                "start": ["systemctl", "start", unit],
                "stop": ["systemctl", "stop", unit],
                "restart": ["systemctl", "restart", unit],
                "status": ["systemctl", "is-active", "--quiet", unit],
                "loaded": ["systemctl", "show", "--property=LoadState", "--value", unit],
            }
        else:
            self.commands = {
                "start": params["start_command"],
                "stop": params["stop_command"],
                "status": params["status_command"],
            }

    def run(self, verb):
        argv = self.commands.get(verb)
        if not argv:
            self.module.fail_json(msg=f"no {verb} command configured for the core service")
        try:
            return self.module.run_command(argv, handle_exceptions=False)
        except OSError as exc:
            return None, "", f"cannot run {argv[0]}: {exc}"

    def reachable(self):
        if self.manager == "systemd":
            rc, out, err = self.run("loaded")
            return rc == 0 and out.strip() == "loaded", (err or out).strip()
        rc, out, err = self.run("status")
        return rc is not None, (err or out).strip()

    def active(self):
        rc, _, _ = self.run("status")
        return rc == 0

    def act(self, verb):
        rc, out, err = self.run(verb)
        if rc != 0:
            detail = (err or out).strip().splitlines()
            self.module.fail_json(msg=f"{verb} of the core service failed (rc={rc})"
                                  + (f": {detail[-1]}" if detail else ""), rc=rc,
                                  stdout=out, stderr=err)

    def wait_active(self, wait, settle):
        deadline = time.monotonic() + wait
        while not self.active():
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        if settle:
            time.sleep(settle)
            return self.active()
        return True


def main():
    module = AnsibleModule(
        argument_spec={
            "manager": {"type": "str", "choices": ["systemd", "command"], "default": "systemd"},
            "name": {"type": "str", "default": "dunebugger"},
            "start_command": {"type": "list", "elements": "str"},
            "stop_command": {"type": "list", "elements": "str"},
            "status_command": {"type": "list", "elements": "str"},
            "state": {"type": "str", "required": True,
                      "choices": ["started", "stopped", "restarted", "checked"]},
            "wait": {"type": "float", "default": 0},
            "settle": {"type": "float", "default": 0},
        },
        required_if=[("manager", "command", ["status_command"])],
        supports_check_mode=True,
    )
    narrow_environment()
    service = Service(module)
    state = module.params["state"]
    if state == "checked":
        reachable, detail = service.reachable()
        active = reachable and service.wait_active(module.params["wait"], module.params["settle"])
        module.exit_json(changed=False, reachable=reachable, active=active, detail=detail)

    was_active = service.active()
    wanted_change = {"started": not was_active, "stopped": was_active, "restarted": True}[state]
    if wanted_change and not module.check_mode:
        if state == "restarted" and service.manager == "command":
            service.act("stop")
            service.act("start")
        else:
            service.act({"started": "start", "stopped": "stop", "restarted": "restart"}[state])
    module.exit_json(changed=wanted_change, was_active=was_active)


if __name__ == "__main__":
    main()
