# Extracting a core release archive nobody vouches for yet into releases/<version>
# (the core_stage module on the device; the tests import it as plain Python).
# Standard library only, Python 3.9+.
#
# Every member is checked before anything is written: absolute paths, `..`, links that
# leave the release, a name that repeats an earlier one or lies below a link or file,
# devices, fifos, setuid bits, names past the bounds below. Every member is then created
# relative to a directory descriptor opened with O_NOFOLLOW, so even a link the checks
# missed is never followed while writing; once all exist, every symlink is resolved for
# real. Sizes and member counts are capped header by header (dunebugger_archive).

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import os
import posixpath
import shutil
import stat

from ansible.module_utils.dunebugger_archive import ArchiveRefused, capped_members, open_archive, shown
from ansible.module_utils.dunebugger_files import remove_tree

DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_MEMBERS = 20000
MAX_VERSION_FILE_BYTES = 4096
MAX_DEPTH = 64  # path components of a member name
MAX_NAME_BYTES = 4096  # a member name or a link target (PATH_MAX)
MAX_COMPONENT_BYTES = 255  # one path component (NAME_MAX)
DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
VENV_DIR = ".venv"  # created by the stage from the release's requirements, never shipped


def normalize(name):
    """Archive name -> list of path components, refusing absolute and '..' paths and
    names past the bounds above."""
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(f"member {shown(name)} has an absolute path")
    if byte_length(name) > MAX_NAME_BYTES:
        raise ArchiveRefused(f"member {shown(name)} has a name longer than {MAX_NAME_BYTES} bytes")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise ArchiveRefused(f"member {shown(name)} contains a '..' component")
    if len(parts) > MAX_DEPTH:
        raise ArchiveRefused(f"member {shown(name)} is {len(parts)} path components deep; "
                             f"at most {MAX_DEPTH} are accepted")
    if any(byte_length(part) > MAX_COMPONENT_BYTES for part in parts):
        raise ArchiveRefused(f"member {shown(name)} has a path component longer than {MAX_COMPONENT_BYTES} bytes")
    return parts


def byte_length(text):
    return len(text.encode("utf-8", "surrogateescape"))


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
    """Raise ArchiveRefused if member (at release-relative path rel) is unsafe."""
    name = member.name
    if member.isdev() or member.isfifo():
        raise ArchiveRefused(f"member {shown(name)} is a device or fifo")
    if member.mode & (stat.S_ISUID | stat.S_ISGID):
        raise ArchiveRefused(f"member {shown(name)} has the setuid or setgid bit")
    if (member.issym() or member.islnk()) and byte_length(member.linkname) > MAX_NAME_BYTES:
        raise ArchiveRefused(f"link {shown(name)} has a target longer than {MAX_NAME_BYTES} bytes")
    if member.issym():
        if member.linkname.startswith("/"):
            raise ArchiveRefused(f"symlink {shown(name)} points to absolute path {shown(member.linkname)}")
        target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), member.linkname))
        if target == ".." or target.startswith("../"):
            raise ArchiveRefused(f"symlink {shown(name)} -> {shown(member.linkname)} leaves the release")
    elif member.islnk():
        pass  # resolved against the stripped names by the caller
    elif not (member.isreg() or member.isdir()):
        raise ArchiveRefused(f"member {shown(name)} has unsupported type {member.type!r}")


class Names:
    """The release paths the members seen so far take. A member may not repeat an earlier
    name (two directories excepted) nor lie below a link or a file, whatever the order of
    the members: so every member is written below real directories only."""

    def __init__(self):
        self.directories = set()
        self.others = set()

    def claim(self, member, parts):
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            if parent in self.others:
                raise ArchiveRefused(f"member {shown(member.name)} lies below {shown(parent)}, which is not a directory")
            self.directories.add(parent)
        rel = "/".join(parts)
        if rel in self.others or (rel in self.directories and not member.isdir()):
            raise ArchiveRefused(f"member {shown(member.name)} repeats the name of an earlier member")
        (self.directories if member.isdir() else self.others).add(rel)


def plan(tar, max_bytes=DEFAULT_MAX_BYTES):
    """Validate all members of an archive from open_archive (which counts them as it
    reads them); return [(member, release-relative path)] to extract."""
    members = [(normalize(m.name), m) for m in capped_members(tar, max_bytes)]
    top = common_top(members)
    planned, names, regular_files = [], Names(), set()
    for parts, member in members:
        if top is not None:
            parts = parts[1:]
        if not parts:
            continue
        rel = "/".join(parts)
        if parts[0] == VENV_DIR:
            # Its python would run while staging, and the requirements would not be installed.
            raise ArchiveRefused(f"member {shown(member.name)} lies in {VENV_DIR}, the virtualenv the "
                                 "updater creates: a release must not ship one")
        check_member(member, rel)
        names.claim(member, parts)
        if member.islnk():
            try:
                link_parts = normalize(member.linkname)
            except ArchiveRefused:
                raise ArchiveRefused(f"hardlink {shown(member.name)} -> {shown(member.linkname)} leaves the release")
            if top is not None and link_parts[:1] == [top]:
                link_parts = link_parts[1:]
            if "/".join(link_parts) not in regular_files:
                raise ArchiveRefused(f"hardlink {shown(member.name)} -> {shown(member.linkname)} does not "
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


class ReleaseDir:
    """The release being written. Every name is opened or created relative to the
    descriptor of a directory reached without following a link (O_NOFOLLOW), so no
    write, mkdir or chmod can land outside the release, whatever the archive holds."""

    def __init__(self, path):
        self.fd = os.open(path, DIRECTORY_FLAGS)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        os.close(self.fd)

    @contextlib.contextmanager
    def directory(self, parts, *, create=False):
        """A descriptor of the directory at parts (each missing one created if create)."""
        fd = os.dup(self.fd)
        try:
            for part in parts:
                if create:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(part, 0o755, dir_fd=fd)
                child = os.open(part, DIRECTORY_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
            yield fd
        finally:
            os.close(fd)

    def write_member(self, tar, member, rel):
        parts = rel.split("/")
        mode = member.mode & 0o777
        if member.isdir():
            with self.directory(parts, create=True) as fd:
                os.fchmod(fd, mode | 0o700)
            return
        *parents, name = parts
        with self.directory(parents, create=True) as parent:
            if member.issym():
                os.symlink(member.linkname, name, dir_fd=parent)
            elif member.islnk():
                *source_parents, source = member.linkname.split("/")
                with self.directory(source_parents) as source_parent:
                    os.link(source, name, src_dir_fd=source_parent, dst_dir_fd=parent, follow_symlinks=False)
            else:
                self.write_file(parent, name, tar.extractfile(member), mode)

    @staticmethod
    def write_file(parent, name, source, mode):
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=parent)
        with os.fdopen(fd, "wb") as handle:
            shutil.copyfileobj(source, handle)
            os.fchmod(handle.fileno(), mode)

    def read_version_file(self):
        """The start of VERSION as text; None when there is none."""
        try:
            info = os.stat("VERSION", dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(info.st_mode):
            raise ArchiveRefused("VERSION is not a regular file")
        with os.fdopen(os.open("VERSION", os.O_RDONLY | os.O_NOFOLLOW, dir_fd=self.fd), "rb") as handle:
            return handle.read(MAX_VERSION_FILE_BYTES).decode("utf-8", "replace").strip()


def check_links(root, planned):
    """The lexical check of each link cannot see chains (x/b -> .., a -> x/b/..): now
    that every member exists, resolve each link for real (reading only)."""
    for member, rel in planned:
        if member.issym() and not inside(root, os.path.join(root, rel)):
            raise ArchiveRefused(f"symlink {shown(member.name)} -> {shown(member.linkname)} leaves the release")


def release_version(release):
    """What VERSION names (JSON with a 'version' key, or one plain line); None without one."""
    text = release.read_version_file()
    if text is None:
        return None
    if not text.startswith("{"):
        return text.splitlines()[0].strip() if text else ""
    try:
        return str(json.loads(text)["version"]).strip()
    except (ValueError, KeyError, TypeError, RecursionError):
        raise ArchiveRefused("VERSION is JSON without a usable 'version' key")


def same_version(left, right):
    return left.removeprefix("v") == right.removeprefix("v")


def check_version(release, expected):
    found = release_version(release)
    if found is None:
        release.write_file(release.fd, "VERSION", io.BytesIO(f"{expected}\n".encode()), 0o644)
        return expected, True
    if not same_version(found, expected):
        raise ArchiveRefused(f"release VERSION is {shown(found)}, expected {expected!r}")
    return found, False


def migration_argv(root, final, relpath):
    """argv running the migration script from the final release dir ([] if absent)."""
    if not relpath:
        return []
    candidate = os.path.join(root, relpath)
    if not os.path.lexists(candidate):
        return []
    if not inside(root, candidate):
        raise ArchiveRefused(f"migration script {relpath!r} resolves outside the release")
    if not os.path.isfile(candidate):
        raise ArchiveRefused(f"migration script {relpath!r} is not a regular file")
    rel = os.path.relpath(os.path.realpath(candidate), os.path.realpath(root))
    final_path = os.path.join(final, rel)
    if os.access(candidate, os.X_OK):
        return [final_path]
    if candidate.endswith(".sh"):
        return ["/bin/sh", final_path]  # still argv: the script is a file, not a command line
    raise ArchiveRefused(f"migration script {relpath!r} is not executable")


def stage(src, partial, dest, expected, script, max_bytes, max_members):
    """Write the release into partial and check it; its result values, or ArchiveRefused."""
    with open_archive(src, max_members, max_bytes) as tar, ReleaseDir(partial) as release:
        planned = plan(tar, max_bytes)
        if not planned:
            raise ArchiveRefused("the archive is empty")
        for member, rel in planned:
            release.write_member(tar, member, rel)
        check_links(partial, planned)
        version, wrote = check_version(release, expected)
    return {"version": version, "wrote_version_file": wrote, "members": len(planned),
            "migration_argv": migration_argv(partial, dest, script)}


def extract(src, dest, expected, script, max_bytes=DEFAULT_MAX_BYTES, max_members=DEFAULT_MAX_MEMBERS):
    """Stage the release in <dest>.partial, then rename it to dest; on any failure
    nothing of the partial directory is left."""
    partial = dest + ".partial"
    remove_tree(partial)
    os.makedirs(partial, mode=0o755)
    try:
        result = stage(src, partial, dest, expected, script, max_bytes, max_members)
        remove_tree(dest)
        os.rename(partial, dest)
    except BaseException:
        with contextlib.suppress(OSError):  # the error that got us here is the one to report
            remove_tree(partial)
        raise
    return {**result, "has_requirements": os.path.isfile(os.path.join(dest, "requirements.txt"))}


def highest_missing(path):
    """The topmost ancestor of path (or path itself) that does not exist yet, else None."""
    missing = None
    while not os.path.exists(path):
        missing, parent = path, os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing


def problem(exc):
    """What went wrong, in a message of bounded length: an OSError names its file."""
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.strerror}: {shown(os.fsdecode(exc.filename))}"
    return str(exc)


def check_sha256(path, expected):
    """The archive copied to the device is the one verified on the controller."""
    expected = expected.lower().removeprefix("sha256:")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise ArchiveRefused(f"sha256 mismatch: expected {expected}, got {digest.hexdigest()}")
