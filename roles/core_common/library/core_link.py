#!/usr/bin/python
"""Point the core install path at a release directory, atomically."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_link
short_description: Atomically switch the core install symlink to a release directory
description:
  - Creates a temporary symlink beside I(path) and renames it over I(path), so readers
    see either the old or the new target, never a missing path.
  - If I(path) is a plain directory (an installation from before the releases layout),
    it is first renamed to I(migrate_to). The service must be stopped by then.
options:
  path: {type: path, required: true, description: the install path, e.g. /opt/dunebugger/core}
  target: {type: path, required: true, description: release directory the link must point at}
  migrate_to: {type: path, description: where to move a plain directory found at path}
  previous_file: {type: path, description: file that records the release being replaced}
  previous: {type: str, description: that release's version, written before the link moves}
"""

import os

from ansible.module_utils.basic import AnsibleModule


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def migrate_plain_dir(module, path, migrate_to):
    if not migrate_to:
        module.fail_json(msg=f"{path} is a plain directory and no migrate_to was given")
    if os.path.lexists(migrate_to):
        module.fail_json(msg=f"cannot migrate {path}: {migrate_to} already exists")
    os.makedirs(os.path.dirname(migrate_to), exist_ok=True)
    os.rename(path, migrate_to)


def record_previous(previous_file, previous):
    """Written before the link moves, so a crash right after the switch knows the way back."""
    os.makedirs(os.path.dirname(previous_file), exist_ok=True)
    tmp = f"{previous_file}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(previous + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, previous_file)


def replace_link(path, target):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-link-{os.getpid()}"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(path))


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "target": {"type": "path", "required": True},
            "migrate_to": {"type": "path"},
            "previous_file": {"type": "path"},
            "previous": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    path, target, migrate_to = (module.params[k] for k in ("path", "target", "migrate_to"))
    if not os.path.isdir(target):
        module.fail_json(msg=f"release directory {target} does not exist")
    is_link = os.path.islink(path)
    previous = os.path.realpath(path) if os.path.lexists(path) else None
    result = {"path": path, "target": target, "previous_target": previous, "migrated_to": None}
    if is_link and previous == os.path.realpath(target):
        module.exit_json(changed=False, **result)
    if os.path.lexists(path) and not is_link and not os.path.isdir(path):
        module.fail_json(msg=f"{path} exists and is neither a symlink nor a directory", **result)
    if module.check_mode:
        module.exit_json(changed=True, **result)
    if module.params["previous_file"] and module.params["previous"]:
        record_previous(module.params["previous_file"], module.params["previous"])
    if os.path.isdir(path) and not is_link:
        migrate_plain_dir(module, path, migrate_to)
        result["migrated_to"] = migrate_to
    replace_link(path, target)
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
