#!/usr/bin/python
"""Safely extract a core release archive into the releases directory."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_safe_extract
short_description: Extract a release tarball into <dest>.partial with explicit checks, then rename to <dest>
description:
  - Every member is checked before anything is written. Refused, naming the member -
    absolute paths, C(..) components, symlinks or hardlinks whose target leaves the release,
    device and fifo files, setuid/setgid bits, any other non-regular member type.
  - Decompression bombs are refused - the declared sizes of the members are added up
    header by header while the archive is read, and the archive is refused at the first
    header that takes the total past I(max_bytes) (or the count past I(max_members)),
    before that member's data is decompressed or anything is written.
  - Members may sit at the archive root or under exactly one top directory, which is stripped.
  - The release's VERSION (JSON with a C(version) key, or one plain line) must equal
    I(expected_version); a plain VERSION is written when the archive has none.
  - Files are created by the module user (archive ownership is ignored), modes are kept
    without setuid/setgid/sticky bits.
  - The releases directory (parent of I(dest)) is created if needed; C(created_root) names
    the highest directory this call created (null if none), for the caller's cleanup.
  - On any failure the partial directory (and directories created by this call) are removed
    and I(dest) is left untouched.
  - Returns C(migration_argv) ([] without a script) and C(has_requirements).
options:
  src: {type: path, required: true, description: the tar(.gz) on the device}
  dest: {type: path, required: true, description: final release directory releases/<version>}
  expected_version: {type: str, required: true}
  migration_script: {type: str, description: path relative to the release root; its argv is returned as migration_argv ([] if absent)}
  max_bytes: {type: int, default: 1073741824, description: cap on the unpacked size of all regular files}
  max_members: {type: int, default: 20000, description: cap on the number of archive members}
"""

import copy
import json
import os
import posixpath
import shutil
import stat
import tarfile

from ansible.module_utils.basic import AnsibleModule

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 20000
MAX_VERSION_FILE_BYTES = 4096


class Refused(Exception):
    """An archive member, or the release as a whole, is not acceptable."""


def normalize(name):
    """Archive name -> list of path components, refusing absolute and '..' paths."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise Refused(f"member {name!r} has an absolute path")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise Refused(f"member {name!r} contains a '..' component")
    return parts


def common_top(members):
    """The single top directory every member lives under, or None."""
    tops = {parts[0] for parts, member in members if parts}
    if len(tops) != 1:
        return None
    top = tops.pop()
    for parts, member in members:
        if parts == [top] and not member.isdir():
            return None
    return top


def check_member(member, rel):
    """Raise Refused if member (at release-relative path rel) is unsafe."""
    name = member.name
    if member.isdev() or member.isfifo():
        raise Refused(f"member {name!r} is a device or fifo")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise Refused(f"member {name!r} has the setuid or setgid bit")
    if member.issym():
        if member.linkname.startswith("/"):
            raise Refused(f"symlink {name!r} points to absolute path {member.linkname!r}")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
        if target == ".." or target.startswith("../"):
            raise Refused(f"symlink {name!r} -> {member.linkname!r} leaves the release")
    elif member.islnk():
        pass  # resolved against the stripped names by the caller
    elif not (member.isreg() or member.isdir()):
        raise Refused(f"member {name!r} has unsupported type {member.type!r}")


def read_members(tar, max_bytes=DEFAULT_MAX_BYTES, max_members=DEFAULT_MAX_MEMBERS):
    """Every member, read header by header under the caps (see DOCUMENTATION).

    Reading the next header skips (decompresses) the previous member's data, so the
    sizes are checked on each header before moving on: a bomb costs at most max_bytes
    of decompression and nothing on disk.
    """
    members, total = [], 0
    while True:
        member = tar.next()
        if member is None:
            return members
        members.append(member)
        if len(members) > max_members:
            raise Refused(f"the archive has more than {max_members} members")
        total += max(member.size, 0) if member.isreg() else 0
        if total > max_bytes:
            raise Refused(f"member {member.name!r} takes the unpacked release past the cap of "
                          f"{max_bytes} bytes (a decompression bomb?)")


def plan(tar, max_bytes=DEFAULT_MAX_BYTES, max_members=DEFAULT_MAX_MEMBERS):
    """Validate all members; return [(member, release-relative path)] to extract."""
    members = [(normalize(m.name), m) for m in read_members(tar, max_bytes, max_members)]
    top = common_top(members)
    planned, regular_files = [], set()
    for parts, member in members:
        if top is not None:
            parts = parts[1:]
        if not parts:
            continue
        rel = "/".join(parts)
        check_member(member, rel)
        if member.islnk():
            try:
                link_parts = normalize(member.linkname)
            except Refused:
                raise Refused(f"hardlink {member.name!r} -> {member.linkname!r} leaves the release")
            if top is not None and link_parts[:1] == [top]:
                link_parts = link_parts[1:]
            if "/".join(link_parts) not in regular_files:
                raise Refused(f"hardlink {member.name!r} -> {member.linkname!r} does not "
                              "point to a regular file of the release")
            member = copy.copy(member)
            member.linkname = "/".join(link_parts)
        elif member.isreg():
            regular_files.add(rel)
        planned.append((member, rel))
    return planned


def inside(root, path):
    root = os.path.realpath(root)
    return os.path.realpath(path) == root or os.path.realpath(path).startswith(root + os.sep)


def write_member(tar, member, rel, root):
    path = os.path.join(root, rel)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    if not inside(root, parent):
        raise Refused(f"member {member.name!r} would be written outside the release")
    mode = member.mode & 0o777
    if member.isdir():
        os.makedirs(path, exist_ok=True)
        os.chmod(path, mode | 0o700)
    elif member.issym():
        os.symlink(member.linkname, path)
    elif member.islnk():
        os.link(os.path.join(root, member.linkname), path)
    else:
        source = tar.extractfile(member)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(source, handle)
        os.chmod(path, mode)


def release_version(root):
    try:
        with open(os.path.join(root, "VERSION"), encoding="utf-8") as handle:
            text = handle.read(MAX_VERSION_FILE_BYTES).strip()
    except FileNotFoundError:
        return None
    if text.startswith("{"):
        try:
            return str(json.loads(text)["version"]).strip()
        except (ValueError, KeyError, TypeError, RecursionError):
            raise Refused("VERSION is JSON without a usable 'version' key")
    return text.splitlines()[0].strip() if text else ""


def same_version(left, right):
    return left.removeprefix("v") == right.removeprefix("v")


def check_version(root, expected):
    found = release_version(root)
    if found is None:
        with open(os.path.join(root, "VERSION"), "w", encoding="utf-8") as handle:
            handle.write(expected + "\n")
        return expected, True
    if not same_version(found, expected):
        raise Refused(f"release VERSION is {found!r}, expected {expected!r}")
    return found, False


def migration_argv(root, final, relpath):
    """argv running the migration script from the final release dir ([] if absent)."""
    if not relpath:
        return []
    candidate = os.path.join(root, relpath)
    if not os.path.lexists(candidate):
        return []
    if not inside(root, candidate):
        raise Refused(f"migration script {relpath!r} resolves outside the release")
    if not os.path.isfile(candidate):
        raise Refused(f"migration script {relpath!r} is not a regular file")
    rel = os.path.relpath(os.path.realpath(candidate), os.path.realpath(root))
    final_path = os.path.join(final, rel)
    if os.access(candidate, os.X_OK):
        return [final_path]
    if candidate.endswith(".sh"):
        return ["/bin/sh", final_path]  # still argv: the script is a file, not a command line
    raise Refused(f"migration script {relpath!r} is not executable")


def extract(src, dest, expected, script, max_bytes=DEFAULT_MAX_BYTES, max_members=DEFAULT_MAX_MEMBERS):
    partial = dest + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial, mode=0o755)
    with tarfile.open(src, "r:*") as tar:
        planned = plan(tar, max_bytes, max_members)
        if not planned:
            raise Refused("the archive is empty")
        for member, rel in planned:
            write_member(tar, member, rel, partial)
    # The lexical check above cannot see chains (x/b -> .., a -> x/b/..): now that every
    # member exists, resolve each link for real.
    for member, rel in planned:
        if member.issym() and not inside(partial, os.path.join(partial, rel)):
            raise Refused(f"symlink {member.name!r} -> {member.linkname!r} leaves the release")
    version, wrote = check_version(partial, expected)
    script_argv = migration_argv(partial, dest, script)
    if os.path.isdir(dest):
        shutil.rmtree(dest)
    os.rename(partial, dest)
    return {"version": version, "wrote_version_file": wrote, "members": len(planned),
            "migration_argv": script_argv,
            "has_requirements": os.path.isfile(os.path.join(dest, "requirements.txt"))}


def highest_missing(path):
    """The topmost ancestor of path (or path itself) that does not exist yet, else None."""
    missing = None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def main():
    module = AnsibleModule(
        argument_spec={
            "src": {"type": "path", "required": True},
            "dest": {"type": "path", "required": True},
            "expected_version": {"type": "str", "required": True},
            "migration_script": {"type": "str"},
            "max_bytes": {"type": "int", "default": DEFAULT_MAX_BYTES},
            "max_members": {"type": "int", "default": DEFAULT_MAX_MEMBERS},
        },
    )
    src, dest = module.params["src"], module.params["dest"].rstrip("/")
    parent = os.path.dirname(dest)
    created_root = highest_missing(parent)
    try:
        os.makedirs(parent, mode=0o755, exist_ok=True)
        result = extract(src, dest, module.params["expected_version"],
                         module.params["migration_script"],
                         module.params["max_bytes"], module.params["max_members"])
    except (Refused, tarfile.TarError, OSError) as exc:
        shutil.rmtree(dest + ".partial", ignore_errors=True)
        if created_root:
            shutil.rmtree(created_root, ignore_errors=True)
        prefix = "refused release archive" if isinstance(exc, Refused) else "cannot extract"
        module.fail_json(msg=f"{prefix} {os.path.basename(src)}: {exc}")
    module.exit_json(changed=True, dest=dest, created_root=created_root, **result)


if __name__ == "__main__":
    main()
