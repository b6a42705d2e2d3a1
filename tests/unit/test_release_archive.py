"""A release archive from this device read through once: damage anywhere in it, a
missing end, what follows its end, and its VERSION file as the extraction reads it."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import tarfile
from pathlib import Path

import pytest

from dunebugger_updater.release.release_archive import NotAReleaseArchive, read_release_archive
from dunebugger_updater.roles.core_common.module_utils.dunebugger_archive import ArchiveRefused

RELEASE = {"dunebugger-1.1.0/VERSION": b'{"version": "1.1.0", "build_type": "release"}\n',
           "dunebugger-1.1.0/app.py": b"print('hello')\n" * 400,
           "dunebugger-1.1.0/scripts/migrate.sh": b"#!/bin/sh\n"}


def tar_bytes(members: dict[str, bytes | str]) -> bytes:
    """A plain tar: a str value makes a symlink to it."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    return stream.getvalue()


def read(tmp_path: Path, data: bytes, **caps: int):
    path = tmp_path / "dunebugger-1.1.0.tar.gz"
    path.write_bytes(data)
    return read_release_archive(path, **{"max_bytes": 1024 * 1024, "max_members": 100, **caps})


def refusal(tmp_path: Path, data: bytes) -> str:
    with pytest.raises(NotAReleaseArchive) as refused:
        read(tmp_path, data)
    return str(refused.value)


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress, lzma.compress, lambda data: data],
                         ids=["gzip", "bzip2", "xz", "plain"])
def test_a_whole_archive_is_read_as_the_extraction_names_it(tmp_path, compress):
    contents = read(tmp_path, compress(tar_bytes(RELEASE)))
    assert contents.version == "1.1.0"
    assert contents.files == {"VERSION", "app.py", "scripts/migrate.sh"}  # the top directory stripped


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_a_compressed_archive_cut_anywhere_is_refused(tmp_path, keep):
    whole = gzip.compress(tar_bytes(RELEASE))
    assert "it is cut short or damaged (Compressed file ended" in refusal(tmp_path, whole[:int(len(whole) * keep)])


def test_a_damaged_compressed_archive_is_refused_by_its_checksum(tmp_path):
    damaged = bytearray(gzip.compress(tar_bytes(RELEASE)))
    damaged[-6] ^= 0xFF  # the CRC of the data: only a reader that reaches the end sees it
    assert "it is cut short or damaged (CRC check failed" in refusal(tmp_path, bytes(damaged))


def test_a_plain_archive_cut_between_members_is_refused(tmp_path):
    whole = tar_bytes(RELEASE)
    members_only = whole[:whole.index(b"#!/bin/sh") + tarfile.BLOCKSIZE]  # the last member, without the end
    assert refusal(tmp_path, members_only) == "it is cut short: it ends without the end-of-archive marker"


def test_data_after_the_end_of_the_archive_is_refused(tmp_path):
    assert "data follows where its members end" in refusal(tmp_path, gzip.compress(tar_bytes(RELEASE) + b"x" * 10))


def test_more_than_a_record_of_zeros_after_the_end_is_refused_unread(tmp_path):
    padded = gzip.compress(tar_bytes(RELEASE) + bytes(64 * 1024 * 1024))
    assert "more than 1048576 bytes follow its last member" in refusal(tmp_path, padded)


def test_the_device_caps_apply(tmp_path):
    with pytest.raises(ArchiveRefused, match="past the cap of 100 bytes"):
        read(tmp_path, gzip.compress(tar_bytes(RELEASE)), max_bytes=100)
    with pytest.raises(ArchiveRefused, match="more than 2 members"):
        read(tmp_path, gzip.compress(tar_bytes(RELEASE)), max_members=2)


@pytest.mark.parametrize(("members", "version"), [
    ({"VERSION": b"1.2.0\nbuilt today\n", "app.py": b""}, "1.2.0"),
    ({"top/VERSION": b"1.2.0\n", "top/app.py": b""}, "1.2.0"),
    ({"./VERSION": b"v1.2.0\n", "./app.py": b""}, "v1.2.0"),
    ({"top/app.py": b"", "other/VERSION": b"1.2.0\n"}, None),  # two tops: nothing is stripped
    ({"top/app.py": b""}, None),  # the extraction writes one
])
def test_the_version_file_is_the_one_the_extraction_reads(tmp_path, members, version):
    assert read(tmp_path, tar_bytes(members)).version == version


@pytest.mark.parametrize(("members", "expect"), [
    ({"top/VERSION": "app.py", "top/app.py": b""}, "its VERSION is not a regular file"),
    ({"top/VERSION": b'{"commit": "abc"}', "top/app.py": b""}, "its VERSION names no version"),
    ({"top/VERSION": b"\n", "top/app.py": b""}, "its VERSION names no version"),
    ({}, "it holds no file"),
])
def test_a_version_file_that_names_no_version_is_refused(tmp_path, members, expect):
    assert refusal(tmp_path, tar_bytes(members)) == expect


def test_a_file_that_is_not_a_tar_archive_is_refused(tmp_path):
    assert refusal(tmp_path, b"not an archive\n" * 100).startswith("it is not a tar archive")
