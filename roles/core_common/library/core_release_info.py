#!/usr/bin/python
"""Read-only probe of a core installation and its releases directory."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_release_info
short_description: Describe the installed core, its releases, backups and free space
description:
  - Never changes anything. A missing VERSION file or installation means "not installed".
  - VERSION is either a JSON object with a C(version) key or one plain line.
options:
  install_path: {type: path, required: true, description: core install path (symlink or plain dir)}
  releases_path: {type: path, required: true, description: directory holding one dir per release}
  backup_path: {type: path, description: directory of core-<version>-<timestamp>.tar.gz backups}
  candidate_version: {type: str, description: also describe releases/<candidate_version> and its backups}
"""

import json
import os
import re

from ansible.module_utils.basic import AnsibleModule

BACKUP_RE = re.compile(r"^core-(?P<version>.+)-(?P<stamp>\d{8}T\d{6})\.tar\.gz$")


def read_version(directory):
    """Return the version in directory/VERSION, or None when absent or empty."""
    try:
        with open(os.path.join(directory, "VERSION"), encoding="utf-8") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text).get("version")
        except (ValueError, AttributeError):
            return None
        return str(value).strip() if value else None
    return text.splitlines()[0].strip() if text else None


def read_line(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def free_mb(path):
    """Free space for unprivileged use on the filesystem path is (or would be) on."""
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize // (1024 * 1024)


def retained_releases(releases_path):
    try:
        names = os.listdir(releases_path)
    except OSError:
        return []
    return sorted(
        name for name in names
        if not name.startswith(".") and not name.endswith(".partial")
        and os.path.isdir(os.path.join(releases_path, name))
    )


def backups_of(backup_path, version):
    """Backups of version, newest first."""
    if not backup_path or not os.path.isdir(backup_path):
        return []
    found = []
    for name in os.listdir(backup_path):
        match = BACKUP_RE.match(name)
        if match and match.group("version") == version:
            found.append((match.group("stamp"), os.path.join(backup_path, name)))
    return [path for _, path in sorted(found, reverse=True)]


def describe_installation(install_path, releases_path):
    exists = os.path.lexists(install_path)
    real_path = os.path.realpath(install_path) if exists else None
    release = None
    if real_path and os.path.dirname(real_path) == os.path.realpath(releases_path):
        release = os.path.basename(real_path)
    version = read_version(install_path) if exists else None
    return {
        "exists": exists,
        "is_link": os.path.islink(install_path),
        "is_dir": os.path.isdir(install_path),
        "real_path": real_path,
        "release": release,
        "version": version,
        "installed": version is not None,
    }


def describe_candidate(releases_path, backup_path, version):
    path = os.path.join(releases_path, version)
    return {
        "version": version,
        "path": path,
        "exists": os.path.isdir(path),
        "found_version": read_version(path),
        "has_venv": os.path.exists(os.path.join(path, ".venv", "bin", "python")),
        "backups": backups_of(backup_path, version),
    }


def main():
    module = AnsibleModule(
        argument_spec={
            "install_path": {"type": "path", "required": True},
            "releases_path": {"type": "path", "required": True},
            "backup_path": {"type": "path"},
            "candidate_version": {"type": "str"},
        },
        supports_check_mode=True,
    )
    params = module.params
    result = describe_installation(params["install_path"], params["releases_path"])
    result.update(
        changed=False,
        previous=read_line(os.path.join(params["releases_path"], ".previous")),
        retained=retained_releases(params["releases_path"]),
        free_mb=free_mb(params["releases_path"]),
    )
    if params["candidate_version"]:
        result["candidate"] = describe_candidate(
            params["releases_path"], params["backup_path"], params["candidate_version"])
    module.exit_json(**result)


if __name__ == "__main__":
    main()
