#!/usr/bin/python
"""Verify a started core release: service active, health endpoint, version."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_verify
short_description: Verify that core runs a release, with that release's checks
description:
  - One module execution for every check after a start, each wait bounded by wall-clock
    time whatever one try costs - the service reports active within
    C(service_active_timeout_seconds) and is still active I(settle) seconds later; the
    health URL (if any) answers C(health_expected_status) before C(health_timeout_seconds)
    have passed (each request cut to what is left of the wait); VERSION through the install
    path and the health answer's C(version) (if it has one) equal I(expected_version).
  - Fails naming the first check that did not pass.
  - With I(record), writes the checks that verified the release to
    C(<releases_path>/.checks/<expected_version>.json), so that a later rollback to it is
    verified with them (a record that cannot be written is a warning, not a failure).
options:
  install_path: {type: path, required: true, description: the install path}
  releases_path: {type: path, required: true, description: directory holding one dir per release}
  expected_version: {type: str, required: true, description: the version core must run}
  checks:
    type: dict
    required: true
    description: health_url, health_expected_status, health_timeout_seconds, service_active_timeout_seconds
  manager: {type: str, choices: [systemd, command], default: systemd, description: the service manager}
  name: {type: str, default: dunebugger, description: systemd unit}
  status_command: {type: list, elements: str, description: argv exiting 0 while it runs (manager command)}
  settle: {type: float, default: 0.5, description: seconds the service must stay active after it was}
  health_delay: {type: float, default: 0.25, description: seconds between health attempts}
  health_request_timeout: {type: float, default: 5, description: cap on one health request}
  record: {type: bool, default: false, description: record the checks once the release is verified}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Verify the new release and record what verified it
  core_verify:
    install_path: /opt/dunebugger/core
    releases_path: /opt/dunebugger/releases/core
    expected_version: 1.2.0
    checks: {health_url: "http://127.0.0.1:8000/health", health_expected_status: 200,
             health_timeout_seconds: 60, service_active_timeout_seconds: 30}
    manager: systemd
    record: true
"""

RETURN = r"""
version: {description: the version VERSION says, type: str, returned: always}
health: {description: the health wait (healthy, status, json, attempts, elapsed, last_error), type: dict, returned: when a health URL is set}
recorded: {description: the record written, type: str, returned: when record is true and the write worked}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import (
    CoreError, Service, checks_path, narrow_environment, normalised_checks, read_version, unhealthy_message,
    wait_healthy, write_checks,
)


def same_version(left, right):
    return str(left or "").lstrip("v") == str(right or "").lstrip("v")


def not_active(service, when):
    detail = service.run("status")[1]
    return CoreError(f"the core service is not active {when}" + (f": {detail}" if detail else ""))


def verify(module, checks):
    p = module.params
    service = Service(p["manager"], p["name"], status_command=p["status_command"])
    active_timeout = checks.get("service_active_timeout_seconds", 30.0)
    if not service.wait_active(active_timeout):
        raise not_active(service, f"{active_timeout:g}s after its start")
    active_since = time.monotonic()
    result = {}
    url = checks.get("health_url")
    if url:
        expected = checks.get("health_expected_status", 200)
        timeout = checks.get("health_timeout_seconds", 60.0)
        health = wait_healthy(url, expected, timeout, p["health_delay"], p["health_request_timeout"])
        result["health"] = health
        if not health["healthy"]:
            raise CoreError(unhealthy_message(url, expected, timeout, health))
    # Still active `settle` seconds after it first was (the health wait counts): a release
    # that crashes right after its start is caught even without a health URL.
    time.sleep(max(0.0, p["settle"] - (time.monotonic() - active_since)))
    if not service.active():
        raise not_active(service, f"{p['settle']:g}s after it first was (it stopped)")
    version = read_version(p["install_path"])
    result["version"] = version
    if not same_version(version, p["expected_version"]):
        raise CoreError(f"{p['install_path']} holds version {version or 'none'}, expected {p['expected_version']}")
    reported = (result.get("health", {}).get("json") or {}).get("version")
    if reported is not None and not same_version(reported, p["expected_version"]):
        raise CoreError(f"the health endpoint reports version {reported}, expected {p['expected_version']}")
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "install_path": {"type": "path", "required": True},
            "releases_path": {"type": "path", "required": True},
            "expected_version": {"type": "str", "required": True},
            "checks": {"type": "dict", "required": True},
            "manager": {"type": "str", "choices": ["systemd", "command"], "default": "systemd"},
            "name": {"type": "str", "default": "dunebugger"},
            "status_command": {"type": "list", "elements": "str"},
            "settle": {"type": "float", "default": 0.5},
            "health_delay": {"type": "float", "default": 0.25},
            "health_request_timeout": {"type": "float", "default": 5.0},
            "record": {"type": "bool", "default": False},
        },
        required_if=[("manager", "command", ["status_command"])],
        supports_check_mode=True,
    )
    narrow_environment()
    checks = normalised_checks(module.params["checks"])
    try:
        result = verify(module, checks)
    except CoreError as exc:
        module.fail_json(msg=str(exc))
    changed = False
    if module.params["record"] and not module.check_mode:
        path = checks_path(module.params["releases_path"], module.params["expected_version"])
        if write_checks(path, checks):
            result["recorded"], changed = path, True
        else:
            module.warn(f"cannot record the checks of this release in {path}")
    module.exit_json(changed=changed, **result)


if __name__ == "__main__":
    main()
