"""Files that someone names to the updater (the configuration, an allowed_signers file,
a manifest, an artifact, an inventory, a compose file, a release archive on a USB stick)
are read only when they are regular files, and within a size cap where the whole file
is read: a FIFO would block its reader for ever (opening one waits for a writer) and
`/dev/zero` never ends, and either would hang a command or the service, or eat its
memory. Opening is non-blocking, and what was opened is what is judged (fstat), so a
file swapped between a check and the read cannot slip through.

Both refusals are OSErrors, so a caller's `cannot read PATH: <reason>` covers them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path
from typing import BinaryIO

CHUNK = 1024 * 1024
KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class NotRegularFile(OSError):
    """Not a regular file: `kind` says what it is instead."""

    def __init__(self, kind: str) -> None:
        super().__init__(f"it is {kind}, not a regular file")
        self.kind = kind


class FileTooLarge(OSError):
    def __init__(self, limit: int) -> None:
        super().__init__(f"it is larger than {_size(limit)}")
        self.limit = limit


def kind_of(mode: int) -> str:
    """What a stat mode describes: "a regular file", "a FIFO (named pipe)", ..."""
    return "a regular file" if stat.S_ISREG(mode) else KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading (links followed) when it is a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise NotRegularFile(kind_of(mode))
    return os.fdopen(fd, "rb")


def read_capped(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes."""
    with open_regular(path) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise FileTooLarge(limit)
    return data


def sha256_file(path: Path) -> str:
    """The sha256 of a regular file's bytes."""
    with open_regular(path) as source:
        return copy_hashed(source, None)


def copy_hashed(source: BinaryIO, target: BinaryIO | None, max_bytes: int | None = None) -> str:
    """Copy `source` to `target` (None: nowhere) and return the sha256 of what passed;
    FileTooLarge once more than `max_bytes` were read."""
    digest, total = hashlib.sha256(), 0
    while chunk := source.read(CHUNK):
        total += len(chunk)
        if max_bytes is not None and total > max_bytes:
            raise FileTooLarge(max_bytes)
        digest.update(chunk)
        if target is not None:
            target.write(chunk)
    return digest.hexdigest()


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MiB" if limit % (1024 * 1024) == 0 else f"{limit} bytes"
