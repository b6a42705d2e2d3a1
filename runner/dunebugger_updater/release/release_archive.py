"""A core release archive from this device (a file the operator names, a bundle's), read
through once before anything changes: every header under the caps the device's
extraction applies, every member's data decompressed (so the stream's own checksum and
length are checked: a copy cut short or damaged is caught here, not halfway through
staging), the end-of-archive marker, and the release's `VERSION` file.

Names are taken as the extraction takes them: at the archive's root, or below the one
top directory every member shares, which it strips. What the extraction refuses of a
member (links, paths, types) it still refuses on the device.
"""

from __future__ import annotations

import lzma
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from ..device.installed import version_from_text

# The device's own archive reader (shipped with the roles): headers checked as they are read.
from ..roles.core_common.module_utils.dunebugger_archive import capped_members, open_archive
from .image_archive import tar_problem

VERSION_FILE = "VERSION"
MAX_VERSION_FILE_BYTES = 4096  # as much of VERSION as the extraction reads
# After the last member: the end-of-archive blocks and the padding of the last record
# (10 KiB for GNU tar and Python's tarfile); anything else is not part of a release.
MAX_TRAILING_BYTES = 1024 * 1024
READ_CHUNK = 64 * 1024


class NotAReleaseArchive(ValueError):
    """The file cannot be installed as a release; the message says why."""


@dataclass(frozen=True)
class ReleaseContents:
    files: frozenset[str]  # regular files, named as extracted
    version: str | None  # what VERSION names; None: the archive has none (the extraction writes one)


def read_release_archive(path: Path, *, max_bytes: int, max_members: int) -> ReleaseContents:
    """What the release archive at `path` holds; NotAReleaseArchive, or ArchiveRefused
    past a cap (at most `max_members` members declaring `max_bytes` together)."""
    try:
        tar = open_archive(path, max_members, max_bytes)  # reads the first header
    except EOFError as exc:
        raise _damaged(exc) from None
    except (OSError, tarfile.TarError) as exc:
        raise NotAReleaseArchive(tar_problem(exc)) from None
    with tar:
        try:
            contents = _contents(tar, max_bytes)
            _read_to_the_end(tar)
        except (OSError, tarfile.TarError, EOFError, zlib.error, lzma.LZMAError) as exc:
            raise _damaged(exc) from None
    return contents


def _damaged(exc: Exception) -> NotAReleaseArchive:
    return NotAReleaseArchive(f"it is cut short or damaged ({' '.join(str(exc).split()) or type(exc).__name__})")


@dataclass(frozen=True)
class _Member:
    parts: tuple[str, ...]
    regular: bool
    directory: bool


def _contents(tar: tarfile.TarFile, max_bytes: int) -> ReleaseContents:
    members: list[_Member] = []
    first_top: tuple[str, ...] = ()
    versions: dict[tuple[str, ...], bytes | None] = {}  # VERSION at the root, or below the first top directory
    for member in capped_members(tar, max_bytes):
        parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
        members.append(_Member(parts, member.isreg(), member.isdir()))
        first_top = first_top or parts[:1]
        if parts[-1:] == (VERSION_FILE,) and parts[:-1] in ((), first_top):
            versions[parts] = _read_small(tar, member) if member.isreg() else None
    if not members:
        raise NotAReleaseArchive("it holds no file")
    top = _common_top(members)
    strip = 1 if top else 0
    files = frozenset("/".join(m.parts[strip:]) for m in members if m.regular and len(m.parts) > strip)
    return ReleaseContents(files, _version(versions, (top, VERSION_FILE) if top else (VERSION_FILE,)))


def _common_top(members: list[_Member]) -> str | None:
    """The one top directory every member lives under (the extraction strips it), or None."""
    tops = {member.parts[0] for member in members if member.parts}
    if len(tops) != 1:
        return None
    top = tops.pop()
    alone = (member for member in members if member.parts == (top,))
    return top if all(member.directory for member in alone) else None


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    handle = tar.extractfile(member)
    assert handle is not None  # a regular member always has data to read
    with handle:
        return handle.read(MAX_VERSION_FILE_BYTES)


def _version(versions: dict[tuple[str, ...], bytes | None], where: tuple[str, ...]) -> str | None:
    if where not in versions:
        return None
    data = versions[where]
    if data is None:
        raise NotAReleaseArchive(f"its {VERSION_FILE} is not a regular file")
    version = version_from_text(data.decode("utf-8", errors="replace").strip())
    if version is None:
        raise NotAReleaseArchive(f"its {VERSION_FILE} names no version")
    return version


def _read_to_the_end(tar: tarfile.TarFile) -> None:
    """What follows the last member must be the end-of-archive marker (a block of
    zeros) and padding. Reading it to the end lets the decompressor check the stream's
    checksum and length."""
    end, stream = tar.offset, tar.fileobj
    assert stream is not None
    trailing = 0
    while chunk := stream.read(READ_CHUNK):
        trailing += len(chunk)
        if chunk.count(0) != len(chunk):
            raise NotAReleaseArchive("it is damaged: data follows where its members end")
        if trailing > MAX_TRAILING_BYTES:
            raise NotAReleaseArchive(f"more than {MAX_TRAILING_BYTES} bytes follow its last member")
    if stream.tell() - end < tarfile.BLOCKSIZE:
        raise NotAReleaseArchive("it is cut short: it ends without the end-of-archive marker")
