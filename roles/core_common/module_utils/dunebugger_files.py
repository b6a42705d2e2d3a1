# Files and trees on the device, for the core and container modules: removing a tree
# of any depth, walking one, and the private directories and files that backups live
# in. Standard library only, Python 3.9+.

from __future__ import annotations

import errno
import os
import stat
import tempfile

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
PRIVATE_DIRECTORY_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def remove_tree(path):
    """Remove `path` - a file, a link, or a directory tree of any depth - never following
    a link inside it; nothing there is fine. Iterative: a deep tree costs a list of
    names, never a stack frame per level (shutil.rmtree recurses, and fails on a tree
    deeper than the interpreter's recursion limit), and two open descriptors."""
    try:
        fd = os.open(path, DIRECTORY_FLAGS)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTDIR, errno.ELOOP):  # a file, or a link
            raise
        os.unlink(path)
        return
    pending = [_remove_files(fd)]  # per level down to fd: subdirectories still to remove
    names = []  # the directories from path down to fd
    try:
        while pending:
            if pending[-1]:
                name = pending[-1].pop()
                fd = _descend(fd, name)
                names.append(name)
                pending.append(_remove_files(fd))
                continue
            pending.pop()
            if names:
                fd = _ascend(fd, names.pop())
    finally:
        os.close(fd)
    os.rmdir(path)


def _remove_files(fd):
    """Unlink everything but directories in the directory open on `fd`; its subdirectories."""
    with os.scandir(fd) as entries:
        listed = [(entry.name, entry.is_dir(follow_symlinks=False)) for entry in entries]
    for name, is_directory in listed:
        if not is_directory:
            os.unlink(name, dir_fd=fd)
    return [name for name, is_directory in listed if is_directory]


def _descend(fd, name):
    child = os.open(name, DIRECTORY_FLAGS, dir_fd=fd)
    os.close(fd)
    return child


def _ascend(fd, name):
    """From the emptied directory `name` up to its parent, removing it."""
    parent = os.open("..", DIRECTORY_FLAGS, dir_fd=fd)
    os.close(fd)
    os.rmdir(name, dir_fd=parent)
    return parent


def walk_tree(root):
    """(path, path relative to root) of root and everything below it, parents first,
    names in order, never entering a link; iterative, whatever the depth."""
    pending = [""]
    while pending:
        relative = pending.pop()
        path = os.path.join(root, relative) if relative else root
        yield path, relative
        if stat.S_ISDIR(os.lstat(path).st_mode):
            pending.extend(os.path.join(relative, name) for name in sorted(os.listdir(path), reverse=True))


def private_directory(path):
    """`path` as a directory that only this user may enter, for backups (which hold what
    the installation holds, secrets included): created 0700; an existing one of this
    user tightened to 0700; one of another user, or not a directory, refused (OSError
    with a message saying what to do)."""
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    try:
        os.mkdir(path, PRIVATE_DIRECTORY_MODE)
    except FileExistsError:
        pass
    info = os.stat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(f"{path} is not a directory; backups need one")
    if info.st_uid != os.geteuid():
        raise PermissionError(
            f"{path} belongs to uid {info.st_uid}, not to uid {os.geteuid()} who writes the backups there, "
            "and may let others read them: give it to that user (chown) or choose another backup path")
    if stat.S_IMODE(info.st_mode) != PRIVATE_DIRECTORY_MODE:
        os.chmod(path, PRIVATE_DIRECTORY_MODE)


def create_private(path):
    """A descriptor of a new file `path`, readable and writable by this user only from
    the moment it exists (never a link, never an existing file)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE_MODE)


def write_private(path, data):
    """Write `data` to `path` atomically: a temporary file, 0600 from its creation,
    renamed over it."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        remove_tree(tmp)
        raise
