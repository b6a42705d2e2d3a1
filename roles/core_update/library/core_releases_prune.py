#!/usr/bin/python
"""Remove old core release directories beyond a retention count."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_releases_prune
short_description: Keep the newest I(keep) release dirs (by mtime), never removing I(protect)
description:
  - Stale C(*.partial) directories are removed too, and the recorded checks
    (C(.checks/<version>.json)) of releases that are gone. Other hidden entries are ignored.
  - A tree is removed whatever its depth, never following a link inside it.
options:
  path: {type: path, required: true, description: the releases directory (one directory per release)}
  keep: {type: int, default: 3, description: release directories to keep, the protected ones included}
  protect: {type: list, elements: str, default: [], description: releases never removed (the current and the previous)}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Keep three releases, never the new one nor the one it replaced
  core_releases_prune:
    path: /opt/dunebugger/releases/core
    keep: 3
    protect: [1.2.0, 1.1.0]
"""

RETURN = r"""
removed: {description: the directories and records removed, type: list, elements: str, returned: always}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_files import remove_tree

CHECKS_DIR = ".checks"  # release_checks records, one per release


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "keep": {"type": "int", "default": 3},
            "protect": {"type": "list", "elements": "str", "default": []},
        },
    )
    root, protect = module.params["path"], set(module.params["protect"])
    entries = [e for e in os.scandir(root) if e.is_dir(follow_symlinks=False)
               and not e.name.startswith(".")]
    stale = [e.path for e in entries if e.name.endswith(".partial")]
    releases = sorted((e for e in entries if not e.name.endswith(".partial")),
                      key=lambda e: e.stat(follow_symlinks=False).st_mtime, reverse=True)
    room = max(module.params["keep"] - len(protect & {e.name for e in releases}), 0)
    for entry in releases:
        if entry.name in protect:
            continue
        if room:
            room -= 1
        else:
            stale.append(entry.path)
    removed = []
    for path in stale:
        # The new release is verified by now: an old directory that will not go is a
        # warning, never a reason to roll back.
        try:
            remove_tree(path)
        except OSError as exc:
            module.warn(f"cannot remove old release {path}: {exc}")
            continue
        removed.append(path)
    removed += remove_orphan_check_records(root, module)
    module.exit_json(changed=bool(removed), removed=sorted(removed))


def remove_orphan_check_records(root, module):
    """The recorded checks (.checks/<version>.json) of releases that are gone."""
    records = os.path.join(root, CHECKS_DIR)
    try:
        names = os.listdir(records)
    except OSError:
        return []
    removed = []
    for name in names:
        version = name[:-len(".json")] if name.endswith(".json") else None
        if version and not os.path.isdir(os.path.join(root, version)):
            path = os.path.join(records, name)
            try:
                os.unlink(path)
            except OSError as exc:
                module.warn(f"cannot remove {path}: {exc}")
                continue
            removed.append(path)
    return removed


if __name__ == "__main__":
    main()
