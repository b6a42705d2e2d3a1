#!/usr/bin/python
"""The downtime window of a core update or rollback, as one module execution."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_switch
short_description: Back up, then stop the core service, switch the link, migrate, start
description:
  - Everything that can happen while the old release runs happens first - restoring the
    target from a backup (a rollback), backing up the running installation (read back
    whole when I(backup_max_age_hours) is set; 0600 from its creation, in a I(backup_dir)
    made private - created 0700, tightened to 0700, refused when another user's) - then the window - stop, record
    C(.previous), point I(install_path) at I(target) atomically (moving a plain directory
    aside once), the migration script, start - in this one module execution, so the
    service is down for the switch itself and not for Ansible's cost of several tasks.
  - A migration or a start that fails puts the link back, starts the previous release and
    puts C(.previous) back as it was before failing (C(undone)); the playbook's rescue then
    verifies it.
  - C(switched) says whether the service was stopped (the point after which a failure
    needs a rollback); it is in the result when the module fails too.
  - Service commands, the migration script and so the app get only PATH, HOME, TZ and the
    locale variables (plus the migration's own I(migration_environment)).
options:
  install_path: {type: path, required: true, description: the install path, e.g. /opt/dunebugger/core}
  releases_path: {type: path, required: true, description: directory holding one dir per release}
  target: {type: path, required: true, description: release directory the link must point at}
  previous: {type: str, default: "", description: "the version being replaced, recorded in .previous (empty: nothing recorded)"}
  restore_from: {type: path, description: a backup to restore into target first (a rollback)}
  backup_dir: {type: path, description: back the installation up here before stopping (omit for no backup)}
  backup_version: {type: str, description: the version named in the backup file}
  backup_timestamp: {type: str, description: YYYYmmddTHHMMSS in the backup file name}
  backup_keep: {type: int, default: 5, description: core backups kept in backup_dir}
  backup_max_age_hours: {type: int, default: 0, description: above 0 read the backup back whole and require it younger}
  manager: {type: str, choices: [systemd, command], default: systemd, description: the service manager}
  name: {type: str, default: dunebugger, description: systemd unit}
  start_command: {type: list, elements: str, description: argv starting the service (manager command)}
  stop_command: {type: list, elements: str, description: argv stopping the service (manager command)}
  status_command: {type: list, elements: str, description: argv exiting 0 while it runs (manager command)}
  migration_argv: {type: list, elements: str, default: [], description: "the migration script's argv (empty: none)"}
  migration_environment: {type: dict, default: {}, description: extra environment of the migration script}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Back up, stop, switch, migrate and start
  core_switch:
    install_path: /opt/dunebugger/core
    releases_path: /opt/dunebugger/releases/core
    target: /opt/dunebugger/releases/core/1.2.0
    previous: 1.1.0
    backup_dir: /opt/dunebugger/backups
    backup_version: 1.1.0
    backup_timestamp: 20260101T120000
    manager: systemd
    name: dunebugger
    migration_argv: [/opt/dunebugger/releases/core/1.2.0/scripts/migrate.sh]
  register: switch
"""

RETURN = r"""
switched: {description: whether the service was stopped for the switch, type: bool, returned: always}
undone: {description: whether a failed migration or start was undone (old release started again), type: bool, returned: on failure after the stop}
backup: {description: the backup written, type: str, returned: when backup_dir is set}
backup_members: {description: members read back from the backup, type: int, returned: when backup_max_age_hours is set}
previous_target: {description: where the install path pointed before, type: str, returned: always}
migrated_to: {description: where a plain installation directory was moved, type: str, returned: always}
downtime_seconds: {description: from the stop to the start command's return, type: float, returned: on success}
started_at: {description: "when the start command returned (time.monotonic(), a clock every process of the device shares): core_verify's started_at", type: float, returned: on success}
"""

import os
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import (
    CoreError, Service, create_backup, narrow_environment, point_link, prune_backups, read_version,
    record_previous, recorded_previous, restore_backup, restore_previous, verify_backup,
)


class Switch:
    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.service = Service(self.p["manager"], self.p["name"], self.p["start_command"],
                               self.p["stop_command"], self.p["status_command"])
        self.result = {"switched": False, "previous_target": None, "migrated_to": None}

    def prepare(self):
        """Before the window: the old release keeps running."""
        p = self.p
        if p["restore_from"]:
            restore_backup(p["restore_from"], p["target"])
        if p["backup_dir"] and os.path.lexists(p["install_path"]):
            backup = create_backup(p["install_path"], p["backup_dir"], p["backup_version"], p["backup_timestamp"])
            self.result["backup"] = backup
            if p["backup_max_age_hours"] > 0:
                self.result["backup_members"] = verify_backup(backup, p["backup_max_age_hours"])
            prune_backups(p["backup_dir"], max(p["backup_keep"], 1))

    def window(self):
        p = self.p
        install = p["install_path"]
        before = os.path.realpath(install) if os.path.lexists(install) else None
        self.result["previous_target"] = before
        stopped_at = time.monotonic()
        self.result["switched"] = True
        self.service.stop()
        recorded = recorded_previous(p["releases_path"])
        if p["previous"]:
            record_previous(p["releases_path"], p["previous"])
        if before != os.path.realpath(p["target"]):  # else a restart in place
            migrate_to = os.path.join(p["releases_path"], p["previous"] or read_version(install) or "unversioned")
            self.result["migrated_to"] = point_link(install, p["target"], migrate_to)
        moved_to = self.result["migrated_to"] or before
        try:
            self.migrate()
            self.service.start()
            self.result["started_at"] = time.monotonic()  # system-wide: core_verify's settle counts from it
        except CoreError as exc:
            self.result["undone"] = self.undo(moved_to)
            if self.result["undone"]:
                restore_previous(p["releases_path"], recorded)  # what ran before is running again
            again = "was started again" if self.result["undone"] else "could not be started again"
            raise CoreError(f"{exc}; the previous release {again}") from None
        self.result["downtime_seconds"] = round(time.monotonic() - stopped_at, 3)

    def migrate(self):
        argv = self.p["migration_argv"]
        if not argv:
            return
        environment = {**os.environ, **{k: str(v) for k, v in self.p["migration_environment"].items()}}
        try:
            done = subprocess.run(argv, cwd=self.p["target"], env=environment, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, check=False)
        except OSError as exc:
            raise CoreError(f"cannot run the migration script {argv[0]}: {exc}") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise CoreError(f"the migration script failed (rc={done.returncode})" + (f": {detail[-1]}" if detail else ""))

    def undo(self, previous_target):
        """Link back to what ran before and start it; whether that worked."""
        if not previous_target or not os.path.isdir(previous_target):
            return False
        try:
            self.service.stop()
            point_link(self.p["install_path"], previous_target)
            self.service.start()
        except (CoreError, OSError):
            return False
        return True


def main():
    module = AnsibleModule(
        argument_spec={
            "install_path": {"type": "path", "required": True},
            "releases_path": {"type": "path", "required": True},
            "target": {"type": "path", "required": True},
            "previous": {"type": "str", "default": ""},
            "restore_from": {"type": "path"},
            "backup_dir": {"type": "path"},
            "backup_version": {"type": "str"},
            "backup_timestamp": {"type": "str"},
            "backup_keep": {"type": "int", "default": 5},
            "backup_max_age_hours": {"type": "int", "default": 0},
            "manager": {"type": "str", "choices": ["systemd", "command"], "default": "systemd"},
            "name": {"type": "str", "default": "dunebugger"},
            "start_command": {"type": "list", "elements": "str"},
            "stop_command": {"type": "list", "elements": "str"},
            "status_command": {"type": "list", "elements": "str"},
            "migration_argv": {"type": "list", "elements": "str", "default": []},
            "migration_environment": {"type": "dict", "default": {}},
        },
        required_if=[("manager", "command", ["start_command", "stop_command", "status_command"])],
        required_together=[("backup_dir", "backup_version", "backup_timestamp")],
    )
    narrow_environment()
    switch = Switch(module)
    try:
        switch.prepare()
        switch.window()
    except (CoreError, OSError) as exc:
        module.fail_json(msg=str(exc), changed=switch.result["switched"], **switch.result)
    module.exit_json(changed=True, **switch.result)


if __name__ == "__main__":
    main()
