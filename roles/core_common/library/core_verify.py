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
  - With I(started_at) (the C(started_at) core_switch returns), the settle time counts
    from the start rather than from this module's first look, so it overlaps the time
    Ansible takes between the two modules.
  - With I(prune_keep) above 0, once the release is verified, old release directories
    beyond I(prune_keep) (by mtime, I(prune_protect) counted and never removed) go, with
    stale C(*.partial) directories and the recorded checks of releases that are gone;
    whatever depth, never following a link. One that will not go is a warning.
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
  started_at: {type: float, description: "when the service was started (core_switch's started_at: time.monotonic())"}
  prune_keep: {type: int, default: 0, description: "release directories to keep once verified, protected ones included (0: no pruning)"}
  prune_protect: {type: list, elements: str, default: [], description: releases never pruned (the new and the previous)}
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
    started_at: "{{ switched.started_at }}"
    prune_keep: 3
    prune_protect: [1.2.0, 1.1.0]
"""

RETURN = r"""
version: {description: the version VERSION says, type: str, returned: always}
health: {description: the health wait (healthy, status, json, attempts, elapsed, last_error), type: dict, returned: when a health URL is set}
recorded: {description: the record written, type: str, returned: when record is true and the write worked}
pruned: {description: the directories and records pruned, type: list, elements: str, returned: when prune_keep is above 0}
"""

import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import (
    CoreError, Service, checks_path, narrow_environment, normalised_checks, prune_releases, read_version,
    unhealthy_message, wait_healthy, write_checks,
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
    # The settle time counts from the start when the switch says when that was (a clock
    # shared by every process of the device), else from now.
    now, started_at = time.monotonic(), p["started_at"]
    from_start = started_at is not None and started_at <= now
    active_since, since = (started_at, "its start") if from_start else (now, "it first was")
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
        raise not_active(service, f"{p['settle']:g}s after {since} (it stopped)")
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
            "started_at": {"type": "float"},
            "prune_keep": {"type": "int", "default": 0},
            "prune_protect": {"type": "list", "elements": "str", "default": []},
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
    if module.params["prune_keep"] > 0 and not module.check_mode:
        result["pruned"] = prune(module)
        changed = changed or bool(result["pruned"])
    module.exit_json(changed=changed, **result)


def prune(module):
    """Old releases beyond prune_keep, once the new one is verified: what will not go
    is a warning, never a failure (the verified release stays)."""
    p = module.params
    try:
        removed, warnings = prune_releases(p["releases_path"], p["prune_keep"], p["prune_protect"])
    except OSError as exc:
        removed, warnings = [], [f"cannot prune old releases in {p['releases_path']}: {exc}"]
    for warning in warnings:
        module.warn(warning)
    return removed


if __name__ == "__main__":
    main()
