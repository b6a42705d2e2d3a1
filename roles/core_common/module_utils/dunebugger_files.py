# Files and trees on the device, for the core modules: removing a tree of any depth.
# Standard library only, Python 3.9+.

from __future__ import annotations

import errno
import os

DIRECTORY_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


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
