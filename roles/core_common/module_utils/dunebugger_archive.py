# Reading a tar archive that nobody vouches for yet: a core release archive (the
# core_stage module on the device; the updater itself, which imports this file
# from the roles it ships, before it sends one) or an image archive made by `docker save`.
# Standard library only, Python 3.9+.
#
# tarfile reads a member's metadata - GNU long names and long link names, pax extended
# and global headers - whole into memory before it returns the member, whatever size a
# header declares: a 20 KiB .tar.gz can declare a 20 MiB name, or 2 GiB. open_archive
# checks every header on its own 512-byte block, before tarfile reads anything it
# declares, and counts members and declared sizes there, so the caps hold before any
# data is skipped (skipping a member's data means decompressing it).

from __future__ import annotations

import tarfile

MAX_MEMBER_METADATA_BYTES = 64 * 1024  # names, link names and pax records of one member
MAX_MEMBER_METADATA_HEADERS = 8  # an honest member has at most a pax header, a long name and a long link
MAX_ARCHIVE_METADATA_BYTES = 16 * 1024 * 1024
SHOWN_CHARACTERS = 200

METADATA_HEADERS = {
    tarfile.GNUTYPE_LONGNAME: "GNU long name",
    tarfile.GNUTYPE_LONGLINK: "GNU long link name",
    tarfile.XHDTYPE: "pax extended",
    tarfile.SOLARIS_XHDTYPE: "pax extended",
    tarfile.XGLTYPE: "pax global",
}


class ArchiveRefused(Exception):
    """The archive, or one of its members, is not acceptable; the message says which."""


def shown(name, limit=SHOWN_CHARACTERS):
    """A name an archive chose, quoted and cut short: a message stays readable (and
    small) whatever the archive put in it."""
    if len(name) <= limit:
        return repr(name)
    return f"{name[:limit]!r}... ({len(name)} characters)"


class HeaderGuard:
    """Counts what the headers of one archive declare, header by header, and refuses
    the archive at the first header past a cap."""

    def __init__(self, max_members, max_data_bytes=None):
        self.max_members = max_members
        self.max_data_bytes = max_data_bytes  # None: no cap on the members' data (images)
        self.members = 0
        self.data_bytes = 0
        self.archive_metadata = 0
        self.member_metadata = 0
        self.member_headers = 0

    def check(self, header):
        number = self.members + 1
        if header.size < 0:
            raise ArchiveRefused(f"member {number} ({shown(header.name)}) declares a negative size")
        if header.type == tarfile.GNUTYPE_SPARSE:
            raise ArchiveRefused(f"member {number} ({shown(header.name)}) is a sparse file, which is not accepted")
        kind = METADATA_HEADERS.get(header.type)
        if kind is None:
            self.count_member(header, number)
        else:
            self.count_metadata(header, number, kind)
        return header

    def count_member(self, header, number):
        self.members, self.member_metadata, self.member_headers = number, 0, 0
        if number > self.max_members:
            raise ArchiveRefused(f"the archive has more than {self.max_members} members")
        self.data_bytes += header.size
        if self.max_data_bytes is not None and self.data_bytes > self.max_data_bytes:
            raise_past_cap(header.name, self.max_data_bytes)

    def count_metadata(self, header, number, kind):
        self.member_headers += 1
        self.member_metadata += tarfile.BLOCKSIZE + header.size
        self.archive_metadata += header.size
        if self.member_metadata > MAX_MEMBER_METADATA_BYTES:
            raise ArchiveRefused(
                f"member {number} has a {kind} header of {header.size} bytes; at most "
                f"{MAX_MEMBER_METADATA_BYTES} bytes of names and pax headers are read for one member")
        if self.member_headers > MAX_MEMBER_METADATA_HEADERS:
            raise ArchiveRefused(f"member {number} has more than {MAX_MEMBER_METADATA_HEADERS} name and pax headers")
        if self.archive_metadata > MAX_ARCHIVE_METADATA_BYTES:
            raise ArchiveRefused(
                f"the names and pax headers of the archive take more than {MAX_ARCHIVE_METADATA_BYTES} bytes "
                f"(at member {number})")


def raise_past_cap(name, max_bytes):
    raise ArchiveRefused(f"member {shown(name)} takes the unpacked release past the cap of {max_bytes} bytes "
                         "(a decompression bomb?)")


def guarded_tarinfo(guard):
    """A TarInfo class whose every header passes `guard` as soon as its 512-byte block
    is parsed, before tarfile reads what the header declares."""

    class GuardedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf, encoding, errors):
            return guard.check(super().frombuf(buf, encoding, errors))

        def _proc_gnusparse_10(self, member, pax_headers, tarfile):
            # GNU sparse format 1.0 keeps the map of a sparse file at the start of its
            # data, and tarfile would read a map of any length into memory.
            raise ArchiveRefused(f"member {shown(member.name)} is a sparse file, which is not accepted")

    return GuardedTarInfo


def open_archive(path, max_members, max_data_bytes=None, fileobj=None):
    """`path` (a tar, plain or compressed with gzip, bzip2 or xz) opened for reading with
    every header checked as tarfile reads it (HeaderGuard): at most `max_members` members
    declaring at most `max_data_bytes` of data together, and bounded metadata. Raises
    ArchiveRefused, or tarfile.TarError/OSError for what is not a tar archive. `fileobj`:
    `path` already opened (by a caller that checked what it is)."""
    guard = HeaderGuard(max_members, max_data_bytes)
    return tarfile.open(path, "r:*", fileobj=fileobj, tarinfo=guarded_tarinfo(guard))


def capped_members(tar, max_bytes=None):
    """The members of an archive from open_archive, one by one. A pax record may declare
    a member size that its header does not: the sizes tarfile reports are added up too,
    and the archive refused at the member that takes them past `max_bytes`, before its
    data is skipped (read)."""
    total = 0
    for member in tar:
        if member.sparse is not None:
            raise ArchiveRefused(f"member {shown(member.name)} is a sparse file, which is not accepted")
        total += member.size
        if max_bytes is not None and total > max_bytes:
            raise_past_cap(member.name, max_bytes)
        yield member
