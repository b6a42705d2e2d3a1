#!/usr/bin/python
"""Record, or read back, the checks that verified an installed release."""

from __future__ import annotations

DOCUMENTATION = r"""
module: release_checks
short_description: Record or read the post-update checks of one installed release
description:
  - With I(checks), writes them to I(path) atomically (a verified update records what
    verified it). Without, reads them back (C({}) when there is no usable record).
  - A rollback verifies the restored release with its own recorded checks, never with
    the checks of the release that failed.
options:
  path: {type: path, required: true, description: the record file (JSON)}
  checks:
    type: dict
    description: health_url, health_expected_status, health_timeout_seconds, service_active_timeout_seconds
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Record what verified scheduler 1.2.0
  release_checks:
    path: /opt/dunebugger/backups/checks-scheduler-1.2.0.json
    checks: {health_url: "http://127.0.0.1:8080/health", health_timeout_seconds: 60}

- name: Read them back for a rollback
  release_checks:
    path: /opt/dunebugger/backups/checks-scheduler-1.2.0.json
  register: recorded
"""

RETURN = r"""
checks: {description: "the checks recorded, or read (empty when there is no usable record)", type: dict, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import normalised_checks, read_checks, write_checks


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "checks": {"type": "dict"},
        },
        supports_check_mode=True,
    )
    path, wanted = module.params["path"], module.params["checks"]
    if wanted is None:
        module.exit_json(changed=False, checks=read_checks(path))
    checks = normalised_checks(wanted)
    changed = read_checks(path) != checks
    # Recorded after the release was verified: a record we cannot write only means a
    # later rollback to it uses the device's checks; never a reason to roll back.
    if changed and not module.check_mode and not write_checks(path, checks):
        module.warn(f"cannot record the checks of this release in {path}")
        changed = False
    module.exit_json(changed=changed, checks=checks)


if __name__ == "__main__":
    main()
