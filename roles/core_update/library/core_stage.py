#!/usr/bin/python
"""Stage a core release beside the running one: extract it safely, create its venv."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_stage
short_description: Extract a release tarball safely into releases/<version> and create its virtualenv
description:
  - One module execution for everything staged while the old release keeps running.
  - I(src) is the archive on the controller. Over a remote connection the module's action
    plugin sends it into the task's temporary directory on the device (no stat, no copy
    module) and the module removes it there; on the device itself it is read in place.
  - With I(sha256), the archive's sha256 is checked first; a mismatch refuses it before
    anything is read from it.
  - The archive is extracted into <dest>.partial, then renamed to <dest>. Every member is
    checked before anything is written. Refused, naming the member - absolute paths, C(..)
    components, symlinks or hardlinks whose target leaves the release, a hardlink to
    anything but a regular file member before it, a name that repeats an earlier member
    (two directories excepted), a member below a link or a file, device and fifo files,
    setuid/setgid bits, any other non-regular member type.
  - Nothing outside the release is ever created, written or chmod-ed - every member is
    created relative to a directory descriptor reached with O_NOFOLLOW, so even a link
    the checks missed is never followed while writing. Once all members exist, every
    symlink is resolved for real and one that leaves the release (a chain of links that
    each look inside) refuses the archive.
  - Decompression bombs are refused - the declared sizes of the members are added up
    header by header while the archive is read, and the archive is refused at the first
    header that takes the total past I(max_bytes) (or the count past I(max_members)),
    before that member's data is decompressed or anything is written.
  - Metadata bombs are refused on the 512-byte header that declares them, before it is
    read - a GNU long name or long link name or pax header of more than 64 KiB for one
    member (more than 8 such headers before one member, more than 16 MiB in the whole
    archive), a negative size, a sparse file.
  - Names are bounded - a member name (or link target) longer than 4096 bytes, a path
    component longer than 255 bytes, or a name of more than 64 path components is
    refused before anything is written. Messages cut every name to its first 200
    characters.
  - Members may sit at the archive root or under exactly one top directory, which is stripped.
  - The release's VERSION (JSON with a C(version) key, or one plain line) must equal
    I(expected_version); a plain VERSION is written when the archive has none.
  - Files are created by the module user (archive ownership is ignored), modes are kept
    without setuid/setgid/sticky bits; times are not restored. VERSION must be a regular file.
  - With I(migration_required), a release without I(migration_script) is refused.
  - Then the venv C(<dest>/.venv) is created with C(python -m venv --without-pip) and the
    release's requirements.txt installed, when it names anything, by an installer running
    from outside the venv - C(uv pip install --python VENV) when C(uv) is on PATH, else
    C(python -m pip --python VENV install) (pip 22.3 or newer with I(python)); only when
    neither works is pip bootstrapped into the venv and run from there.
  - On any failure nothing this call created is left - the partial directory, the release
    directory, the directories created above it - whatever their depth; a C(.partial) left
    by an earlier run is removed first. A release directory of the same version already
    there (kept for a rollback) is set aside as C(.<version>.kept) while staging and put
    back when the stage fails (one set aside by a run that was killed is put back first). C(created_root) names the highest directory this
    call created (null if none). With I(remove_src), the archive is removed afterwards,
    whatever the outcome.
options:
  src: {type: path, required: true, description: "the tar(.gz) on the controller (on the device for the module itself)"}
  sha256: {type: str, description: the sha256 (hex, optionally prefixed sha256:) the archive must have}
  remove_src: {type: bool, default: false, description: "remove src afterwards (the action plugin sets it for the copy it sent)"}
  dest: {type: path, required: true, description: final release directory releases/<version>}
  expected_version: {type: str, required: true, description: the version the release's VERSION must name}
  migration_script: {type: str, description: "path relative to the release root; its argv is returned as migration_argv (empty if absent)"}
  migration_required: {type: bool, default: false, description: refuse a release without the migration script}
  max_bytes: {type: int, default: 1073741824, description: cap on the unpacked size of all regular files}
  max_members: {type: int, default: 20000, description: cap on the number of archive members}
  python: {type: str, default: python3, description: interpreter that creates the venv}
  venv_args: {type: list, elements: str, default: [], description: extra arguments of python -m venv}
  pip_args: {type: list, elements: str, default: [], description: extra install arguments, e.g. --no-index --find-links DIR}
  installer: {type: str, choices: [auto, uv, pip, venv-pip], default: auto, description: which installer to use}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Stage the release
  core_stage:
    src: /var/lib/dunebugger-updater/downloads/dunebugger-1.2.0.tar.gz
    sha256: 0f4c...e1
    dest: /opt/dunebugger/releases/core/1.2.0
    expected_version: 1.2.0
    migration_script: scripts/migrate.sh
    pip_args: [--no-index, --find-links, /opt/wheels]
  register: staged
"""

RETURN = r"""
dest: {description: the release directory, type: str, returned: success}
version: {description: the version the release's VERSION names, type: str, returned: success}
wrote_version_file: {description: whether a plain VERSION was written (the archive had none), type: bool, returned: success}
members: {description: archive members extracted, type: int, returned: success}
migration_argv: {description: "argv of the migration script (empty when the release has none)", type: list, elements: str, returned: success}
installer: {description: the installer of the requirements (none when nothing was installed), type: str, returned: success, sample: pip}
seconds: {description: time spent creating the venv and installing, type: float, returned: success}
created_root: {description: "the highest directory this call created (null if none)", type: str, returned: always}
"""

import contextlib
import os
import tarfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_archive import ArchiveRefused
from ansible.module_utils.dunebugger_env import INSTALLERS, InstallError, create_env
from ansible.module_utils.dunebugger_extract import (
    DEFAULT_MAX_BYTES, DEFAULT_MAX_MEMBERS, check_sha256, extract, highest_missing, problem,
)
from ansible.module_utils.dunebugger_files import remove_tree


def stage(p, dest):
    """Extract, check, create the venv: the result values, or an exception."""
    if p["sha256"]:
        check_sha256(p["src"], p["sha256"])
    os.makedirs(os.path.dirname(dest), mode=0o755, exist_ok=True)
    extracted = extract(p["src"], dest, p["expected_version"], p["migration_script"], p["max_bytes"], p["max_members"])
    if p["migration_required"] and not extracted["migration_argv"]:
        raise InstallError(f"the release has no migration script {p['migration_script']}, which its manifest "
                           "requires (run_migrations without optional: true)")
    requirements = os.path.join(dest, "requirements.txt")
    env = create_env(p["python"], os.path.join(dest, ".venv"), p["venv_args"],
                     requirements if extracted.pop("has_requirements") else None, p["pip_args"], p["installer"])
    return {**extracted, "installer": env["installer"], "seconds": env["seconds"]}


def message(exc, src):
    if isinstance(exc, ArchiveRefused):
        return f"refused release archive {os.path.basename(src)}: {problem(exc)}"
    if isinstance(exc, (tarfile.TarError, OSError)):
        return f"cannot extract {os.path.basename(src)}: {problem(exc)}"
    return str(exc)


def aside_path(dest):
    """Where a release directory of the version being staged waits - hidden from rollback
    and prune - until the new one is staged."""
    return os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.kept")


def set_aside(dest):
    """Move a release kept for rollback under the version being staged out of the way, so
    a failed stage can put it back; where it went, or None. One left by a killed run wins
    over what dest holds (a stage that was cut short)."""
    aside = aside_path(dest)
    if os.path.lexists(aside):
        remove_tree(dest)
        os.rename(aside, dest)
    if not os.path.lexists(dest):
        return None
    os.rename(dest, aside)
    return aside


def stage_or_undo(p, dest, created_root):
    """stage(), and on any failure nothing this call created is left and the release
    set aside is back; ArchiveRefused, InstallError, TarError or OSError otherwise."""
    aside = set_aside(dest)
    try:
        result = stage(p, dest)
    except BaseException:
        for path in (dest + ".partial", dest, created_root):
            if path:
                with contextlib.suppress(OSError):  # the error that got us here is the one to report
                    remove_tree(path)
        if aside:
            with contextlib.suppress(OSError):
                os.rename(aside, dest)
        raise
    if aside:
        with contextlib.suppress(OSError):  # hidden: never a rollback target, and set aside again next time
            remove_tree(aside)
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "sha256": {"type": "str"},
            "remove_src": {"type": "bool", "default": False},
            "dest": {"type": "path", "required": True},
            "expected_version": {"type": "str", "required": True},
            "migration_script": {"type": "str"},
            "migration_required": {"type": "bool", "default": False},
            "max_bytes": {"type": "int", "default": DEFAULT_MAX_BYTES},
            "max_members": {"type": "int", "default": DEFAULT_MAX_MEMBERS},
            "python": {"type": "str", "default": "python3"},
            "venv_args": {"type": "list", "elements": "str", "default": []},
            "pip_args": {"type": "list", "elements": "str", "default": []},
            "installer": {"type": "str", "choices": list(INSTALLERS), "default": "auto"},
        },
    )
    p = module.params
    dest = p["dest"].rstrip("/")
    created_root = highest_missing(os.path.dirname(dest))
    try:
        result = stage_or_undo(p, dest, created_root)
    except (ArchiveRefused, InstallError, tarfile.TarError, OSError) as exc:
        module.fail_json(msg=message(exc, p["src"]), created_root=created_root)
    finally:
        if p["remove_src"]:
            with contextlib.suppress(OSError):
                os.unlink(p["src"])
    module.exit_json(changed=True, dest=dest, created_root=created_root, **result)


if __name__ == "__main__":
    main()
