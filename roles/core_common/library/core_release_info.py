#!/usr/bin/python
"""Read-only facts of a core installation: releases, service, rollback candidate."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_release_info
short_description: Describe the installed core, its releases, its service and a rollback candidate
description:
  - Never changes anything. One module execution for every read-only probe of a phase.
  - A missing VERSION file or installation means "not installed". VERSION is either a
    JSON object with a C(version) key or one plain line.
  - With I(service_manager), also probes the service (whether the manager knows it and
    whether it is active).
  - With I(candidate), also describes a release to roll back to (an empty string means
    the one recorded in C(.previous)) - whether it is retained, backed up, already
    installed in place or behind the link, its recorded checks (C(.checks/<version>.json))
    and whether it already runs and answers its health endpoint.
options:
  install_path: {type: path, required: true, description: core install path (symlink or plain dir)}
  releases_path: {type: path, required: true, description: directory holding one dir per release}
  backup_path: {type: path, description: directory of core-<version>-<timestamp>.tar.gz backups}
  candidate: {type: str, description: a release to describe for a rollback ("" = .previous)}
  service_manager: {type: str, choices: [systemd, command], description: probe the service through this manager}
  service_name: {type: str, default: dunebugger, description: systemd unit}
  status_command: {type: list, elements: str, description: argv exiting 0 while the service runs (manager command)}
  device_checks: {type: dict, default: {}, description: the device's checks; a candidate's recorded ones win}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Read the installed core and probe its service
  core_release_info:
    install_path: /opt/dunebugger/core
    releases_path: /opt/dunebugger/releases/core
    service_manager: systemd
    service_name: dunebugger
  register: installed

- name: Describe the release recorded as previous, for a rollback
  core_release_info:
    install_path: /opt/dunebugger/core
    releases_path: /opt/dunebugger/releases/core
    backup_path: /opt/dunebugger/backups
    candidate: ""
    service_manager: systemd
    device_checks: {health_url: "http://127.0.0.1:8000/health", health_expected_status: 200}
  register: rollback
"""

RETURN = r"""
installed: {description: whether a VERSION was found, type: bool, returned: always}
version: {description: the installed version, type: str, returned: always, sample: 1.2.0}
exists: {description: whether the install path exists, type: bool, returned: always}
is_link: {description: whether the install path is a symlink, type: bool, returned: always}
is_dir: {description: whether the install path is a directory (through a link too), type: bool, returned: always}
release: {description: the release directory the link points at, type: str, returned: always}
previous: {description: the release recorded in .previous, type: str, returned: always}
retained: {description: the release directories present, type: list, elements: str, returned: always}
free_mb: {description: free MiB where releases are kept, type: int, returned: always}
service:
  description: the service probe (reachable, active, detail)
  type: dict
  returned: when service_manager is set
candidate:
  description: >-
    the rollback candidate - version, path, exists, found_version, has_venv, backups,
    checks (recorded, else device_checks), in_place, linked, running, available
  type: dict
  returned: when candidate is set
"""

import re

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import (
    CoreError, Service, describe_candidate, describe_installation, narrow_environment, probe,
)

VERSION_SHAPE = r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,63}$"


def same_version(left, right):
    return bool(left) and bool(right) and left.lstrip("v") == right.lstrip("v")


def describe_rollback(params, installation, service):
    version = params["candidate"] or installation["previous"] or ""
    if not version:
        return {"version": "", "available": False,
                "problem": "no previous core release is recorded; name the release to go back to"}
    if not re.match(VERSION_SHAPE, version):
        return {"version": version, "available": False, "problem": f"invalid rollback version {version!r}"}
    candidate = describe_candidate(params["releases_path"], params["backup_path"], version)
    candidate["checks"] = {**params["device_checks"], **candidate["checks"]}
    candidate["retained"] = (candidate["exists"] and candidate["has_venv"]
                             and same_version(candidate["found_version"], version))
    # A device never updated yet runs the target from a plain directory: nothing to switch.
    candidate["in_place"] = (installation["is_dir"] and not installation["is_link"]
                             and same_version(installation["version"], version))
    candidate["linked"] = candidate["in_place"] or (installation["is_link"] and installation["release"] == version)
    candidate["available"] = candidate["retained"] or candidate["in_place"] or bool(candidate["backups"])
    candidate["running"] = candidate["linked"] and bool(service and service["active"]) and answers(candidate["checks"])
    if not candidate["available"]:
        candidate["problem"] = (f"core {version} is neither retained in {params['releases_path']} "
                                f"nor backed up in {params['backup_path']}")
    return candidate


def answers(checks):
    url = checks.get("health_url")
    if not url:
        return True
    status, _, _ = probe(url, 2.0)
    return status == int(checks.get("health_expected_status") or 200)


def main():
    module = AnsibleModule(
        argument_spec={
            "install_path": {"type": "path", "required": True},
            "releases_path": {"type": "path", "required": True},
            "backup_path": {"type": "path"},
            "candidate": {"type": "str"},
            "service_manager": {"type": "str", "choices": ["systemd", "command"]},
            "service_name": {"type": "str", "default": "dunebugger"},
            "status_command": {"type": "list", "elements": "str"},
            "device_checks": {"type": "dict", "default": {}},
        },
        required_if=[("service_manager", "command", ["status_command"])],
        supports_check_mode=True,
    )
    params = module.params
    narrow_environment()
    result = describe_installation(params["install_path"], params["releases_path"])
    service = None
    if params["service_manager"]:
        probe_service = Service(params["service_manager"], params["service_name"],
                                status_command=params["status_command"])
        try:
            reachable, active, detail = probe_service.probe()
        except CoreError as exc:
            reachable, active, detail = False, False, str(exc)
        service = {"reachable": reachable, "active": active, "detail": detail}
        result["service"] = service
    if params["candidate"] is not None:
        result["candidate"] = describe_rollback(params, result, service)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
