"""statePath, the updater's own directory: lock, journal, history, caches, downloads
and playbook runs. Whoever may write there can steer the updater (a link planted as
`history.jsonl` turns the next history line into a write to any file root may write),
so this module is the only way in:

- statePath and its subdirectories are created 0700; a statePath owned by another user,
  writable by group or others, or holding a symbolic link is refused (StateDirError, a
  ConfigError: exit status 2, with the path, the problem and the fix), checked once,
  when the directory is first used;
- state files are opened without following links (O_NOFOLLOW) and must be plain files;
  a replacement is written to a new temp file (O_EXCL) in the checked directory and
  renamed over the old one, which would replace a link, never write through it.

statePath itself may be a link (to persistent storage, say): it is the administrator's
choice; its target is checked like a plain directory.
"""

from __future__ import annotations

import errno
import os
import pwd
import secrets
import stat
from pathlib import Path

from .errors import StateDirError, os_reason
from .files import kind_of

SUBDIRECTORIES = ("downloads", "runs", "fleet-runs", "logs")
FILE_MODE = 0o600
DIRECTORY_MODE = 0o700
SET_IT = "set statePath ([Updater] statePath or UPDATER_STATEPATH) to a directory of your own"


class StateDir:
    """One statePath; `ready()` creates and checks it the first time it is needed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._checked = False  # owner, mode and links of statePath
        self._ready = False  # ... and its subdirectories exist

    def ready(self) -> Path:
        """statePath and its subdirectories, created if missing and checked."""
        if not self._ready:
            _create(self.path)
            self._check()
            for name in SUBDIRECTORIES:
                _make_subdirectory(self.path / name)
            self._ready = True
        return self.path

    def subdir(self, name: str) -> Path:
        if name not in SUBDIRECTORIES:
            raise ValueError(f"{name!r} is not a state subdirectory")
        return self.ready() / name

    def read_bytes(self, name: str) -> bytes | None:
        """A state file's bytes; None when it (or statePath) does not exist. Reading
        never creates statePath, so read-only verbs work before the first update."""
        if not self._exists_checked():
            return None
        try:
            fd = open_no_follow(self.path / name, os.O_RDONLY)
        except FileNotFoundError:
            return None
        with os.fdopen(fd, "rb") as handle:
            return handle.read()

    def open(self, name: str, flags: int) -> int:
        """A file descriptor of statePath/name (created 0600 with O_CREAT)."""
        return open_no_follow(self.ready() / name, flags)

    def append(self, name: str, data: bytes) -> None:
        """Append and fsync: a crash loses at most the line being written."""
        fd = self.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, name: str, data: bytes) -> None:
        """Replace statePath/name atomically (temp file, fsync, rename): a power cut
        leaves the old or the new content. Raises OSError when the disk refuses."""
        replace_file(self.ready() / name, data)

    def remove(self, name: str) -> None:
        (self.ready() / name).unlink(missing_ok=True)  # unlink removes a link, never its target

    def _exists_checked(self) -> bool:
        if not self._checked:
            try:
                os.stat(self.path)
            except FileNotFoundError:
                return False
            except OSError as exc:
                raise StateDirError(_cannot("use", self.path, exc)) from None
            self._check()
        return True

    def _check(self) -> None:
        if not self._checked:
            problem = _ownership_problem(self.path, os.stat(self.path)) or _links_problem(self.path)
            if problem:
                raise StateDirError(problem)
            self._checked = True


def open_no_follow(path: Path, flags: int) -> int:
    """os.open that refuses a link or anything but a plain file at `path`."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, FILE_MODE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise StateDirError(f"{path} is a symbolic link; state files must be plain files: remove it") from None
        if exc.errno == errno.ENXIO:  # a FIFO without a reader
            raise StateDirError(f"{path} is not a plain file: remove it") from None
        raise
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or (flags & (os.O_WRONLY | os.O_RDWR) and info.st_nlink > 1):
        os.close(fd)
        what = "has other hard links" if stat.S_ISREG(info.st_mode) else "is not a plain file"
        raise StateDirError(f"{path} {what}; state files must be plain files of their own: remove it")
    return fd


def create_new(path: Path) -> int:
    """A fresh, private file at `path` in a directory only we can write (a partial
    download): whatever was there (a leftover, a link) is removed, not followed."""
    path.unlink(missing_ok=True)
    return open_no_follow(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)


def replace_file(path: Path, data: bytes) -> None:
    """Atomic replace through a new temp file (O_EXCL: never an existing file or link)."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = open_no_follow(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)  # rename replaces a link at `path`; it never writes through one
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


# --- checks ----------------------------------------------------------------------------


def _create(path: Path) -> None:
    try:
        path.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)  # parents get the default mode, like mkdir -p
    except FileExistsError:
        raise StateDirError(_not_a_directory(path, os.stat(path).st_mode)) from None
    except OSError as exc:
        raise StateDirError(_cannot("create", path, exc)) from None


def _not_a_directory(path: Path, mode: int) -> str:
    """statePath is something else: a leftover file may go; a device or a FIFO is a typo."""
    fix = f"remove it, or {SET_IT}" if stat.S_ISREG(mode) else SET_IT
    return f"statePath {path} is {kind_of(mode)}, not a directory: {fix}"


def _make_subdirectory(path: Path) -> None:
    try:
        path.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
        info = os.lstat(path)
    except FileExistsError:
        info = os.lstat(path)
    except OSError as exc:
        raise StateDirError(_cannot("create", path, exc)) from None
    if stat.S_ISLNK(info.st_mode):
        raise StateDirError(f"{path} is a symbolic link; nothing in statePath may be a link: remove it")
    if not stat.S_ISDIR(info.st_mode):
        raise StateDirError(f"{path} is not a directory: remove it")
    problem = _ownership_problem(path, info)
    if problem:
        raise StateDirError(problem)


def _ownership_problem(path: Path, info: os.stat_result) -> str | None:
    mode = f"mode {stat.S_IMODE(info.st_mode):04o}"
    if not stat.S_ISDIR(info.st_mode):
        return _not_a_directory(path, info.st_mode)
    me = os.geteuid()
    if info.st_uid != me:
        owner = _user_name(info.st_uid)
        fix = f"chown -R root {path}" if me == 0 else f"run as {owner}"
        return f"{path} belongs to {owner}, not to {_user_name(me)}: {fix}, or {SET_IT}"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"{path} is writable by group or others ({mode}), who could redirect the updater's files: chmod 700 {path}"
        )
    if not os.access(path, os.W_OK | os.X_OK):
        return f"cannot write {path} ({mode}): chmod 700 {path}"
    return None


def _links_problem(path: Path) -> str | None:
    try:
        links = sorted(entry.name for entry in os.scandir(path) if entry.is_symlink())
    except OSError as exc:
        return _cannot("read", path, exc)
    if not links:
        return None
    shown = ", ".join(f"{name} -> {os.readlink(path / name)}" for name in links[:3])
    return (
        f"{path} holds symbolic links ({shown}); nothing in statePath may be a link, "
        f"as one could redirect the updater's writes: remove them (rm {' '.join(str(path / n) for n in links)})"
    )


def _cannot(what: str, path: Path, exc: OSError) -> str:
    reason = os_reason(exc)
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot {what} {path}: {reason}: run as root, or {SET_IT}"
    if exc.errno == errno.ENOTDIR:
        return f"cannot {what} {path}: a part of the path is not a directory: {SET_IT}"
    return f"cannot {what} {path}: {reason}: {SET_IT}"


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"
