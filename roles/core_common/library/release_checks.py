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
"""

import json
import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

FIELDS = {
    "health_url": str,
    "health_expected_status": int,
    "health_timeout_seconds": float,
    "service_active_timeout_seconds": float,
}
MAX_RECORD_BYTES = 16 * 1024


def normalised(checks):
    """Only the known fields, each of its type; values that do not convert are dropped."""
    clean = {}
    for name, kind in FIELDS.items():
        value = (checks or {}).get(name)
        if value is None:
            continue
        try:
            clean[name] = kind(value)
        except (TypeError, ValueError):
            continue
    return clean


def read(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_RECORD_BYTES + 1)
        document = json.loads(data.decode("utf-8")) if len(data) <= MAX_RECORD_BYTES else None
    except (OSError, ValueError):
        return {}
    return normalised(document) if isinstance(document, dict) else {}


def write(path, checks):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".checks.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(checks, handle, sort_keys=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
        module.exit_json(changed=False, checks=read(path))
    checks = normalised(wanted)
    changed = read(path) != checks
    if changed and not module.check_mode:
        # Recorded after the release was verified: a record we cannot write only means a
        # later rollback to it uses the device's checks; never a reason to roll back.
        try:
            write(path, checks)
        except OSError as exc:
            module.warn(f"cannot record the checks of this release in {path}: {exc}")
            changed = False
    module.exit_json(changed=changed, checks=checks)


if __name__ == "__main__":
    main()
