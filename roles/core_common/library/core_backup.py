#!/usr/bin/python
"""Create, prune and restore timestamped backups of core releases."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_backup
short_description: Back up a core release as core-<version>-<YYYYmmddTHHMMSS>.tar.gz, or restore one
description:
  - I(state=present) archives I(src) (symlinks are resolved first) under a top directory
    named after the version, writes it to a temporary name and renames it into place,
    then keeps only the newest I(keep) core backups in I(dest_dir).
  - I(state=restored) extracts I(archive) (a backup this module wrote, hence trusted:
    the release venv legitimately holds absolute symlinks) into I(dest).partial and
    renames that to I(dest).
options:
  state: {type: str, choices: [present, restored], default: present}
  src: {type: path}
  dest_dir: {type: path}
  version: {type: str}
  timestamp: {type: str, description: YYYYmmddTHHMMSS}
  keep: {type: int, default: 5}
  archive: {type: path}
  dest: {type: path}
  verify_max_age_hours:
    type: int
    description: >-
      After writing the backup, read it back whole (every member, every byte) and
      require it to be younger than this; the update stops before the switch otherwise
      (a manifest's backup_exists check).
"""

import os
import re
import shutil
import tarfile
import time

from ansible.module_utils.basic import AnsibleModule

BACKUP_RE = re.compile(r"^core-.+-(?P<stamp>\d{8}T\d{6})\.tar\.gz$")


def create(src, dest_dir, version, timestamp):
    os.makedirs(dest_dir, exist_ok=True)
    path = os.path.join(dest_dir, f"core-{version}-{timestamp}.tar.gz")
    tmp = path + ".part"
    try:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(os.path.realpath(src), arcname=version)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def verify(path, max_age_hours):
    """Read the backup back whole: a backup that cannot be read cannot be restored."""
    age = time.time() - os.stat(path).st_mtime
    if age > max_age_hours * 3600:
        raise OSError(f"{path} is {age / 3600:.1f} hours old, more than {max_age_hours}")
    members = 0
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            members += 1
            if member.isfile():
                with tar.extractfile(member) as data:
                    while data.read(1 << 20):
                        pass
    if members == 0:
        raise OSError(f"{path} holds nothing")
    return members


def prune(dest_dir, keep):
    found = sorted(
        (match.group("stamp"), name)
        for name in os.listdir(dest_dir)
        if (match := BACKUP_RE.match(name))
    )
    stale = [os.path.join(dest_dir, name) for _, name in found[:max(len(found) - keep, 0)]]
    for path in stale:
        os.unlink(path)
    return stale


def restore(archive, dest):
    partial = dest + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    with tarfile.open(archive, "r:*") as tar:
        members = []
        for member in tar.getmembers():
            top, _, rest = member.name.partition("/")
            if not rest:
                continue
            member.name = rest
            if member.islnk():
                member.linkname = member.linkname.partition("/")[2]
            members.append(member)
        extra = {"filter": "tar"} if hasattr(tarfile, "tar_filter") else {}
        tar.extractall(partial, members=members, **extra)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.rename(partial, dest)


def main():
    module = AnsibleModule(
        argument_spec={
            "state": {"type": "str", "choices": ["present", "restored"], "default": "present"},
            "src": {"type": "path"},
            "dest_dir": {"type": "path"},
            "version": {"type": "str"},
            "timestamp": {"type": "str"},
            "keep": {"type": "int", "default": 5},
            "archive": {"type": "path"},
            "dest": {"type": "path"},
            "verify_max_age_hours": {"type": "int"},
        },
        required_if=[
            ("state", "present", ["src", "dest_dir", "version", "timestamp"]),
            ("state", "restored", ["archive", "dest"]),
        ],
    )
    params = module.params
    try:
        if params["state"] == "restored":
            restore(params["archive"], params["dest"])
            module.exit_json(changed=True, dest=params["dest"], archive=params["archive"])
        path = create(params["src"], params["dest_dir"], params["version"], params["timestamp"])
        members = verify(path, params["verify_max_age_hours"]) if params["verify_max_age_hours"] else None
        removed = prune(params["dest_dir"], max(params["keep"], 1))
    except (OSError, tarfile.TarError) as exc:
        if params["state"] == "restored":
            shutil.rmtree(params["dest"] + ".partial", ignore_errors=True)
        module.fail_json(msg=f"core backup {params['state']} failed: {exc}")
    module.exit_json(changed=True, path=path, removed=removed, verified_members=members)


if __name__ == "__main__":
    main()
