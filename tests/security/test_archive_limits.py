"""Archives whose headers declare more than any release needs: metadata of tens of MiB
(GNU long names and link names, pax headers), chains of metadata headers, negative
sizes, sparse files, names nested deeper than a release ever is. Each is refused on the
header that declares it, before tarfile reads what it declares, with a short message;
in-process on the extraction module, through the updater on the controller, and
through the real playbooks on the device."""

from __future__ import annotations

import contextlib
import gzip
import io
import tarfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.device.events import MAX_TEXT_CHARS
from dunebugger_updater.release.image_archive import NotAnImageArchive, read_image_archive
from support.attack_kit import assert_refused, extraction, gzip_bomb_tar, publish_raw

MiB = 1024 * 1024
METADATA = {
    "longname": (tarfile.GNUTYPE_LONGNAME, "GNU long name"),
    "longlink": (tarfile.GNUTYPE_LONGLINK, "GNU long link name"),
    "pax": (tarfile.XHDTYPE, "pax extended"),
    "paxglobal": (tarfile.XGLTYPE, "pax global"),
}


def header(name: str, kind: bytes, size: int, fmt: int = tarfile.GNU_FORMAT) -> bytes:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mode = kind, size, 0o644
    return info.tobuf(format=fmt)


def padding(size: int) -> bytes:
    return bytes(-size % tarfile.BLOCKSIZE)


def release_tar(version: str = "1.1.0", **extra: bytes) -> bytes:
    """A good release as a plain tar stream (end-of-archive blocks included)."""
    files = {**releases.release_files(version), **extra}
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"dunebugger-{version}/{name}")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return stream.getvalue()


def metadata_bomb(path: Path, kind: str, size: int, *, before: bytes = b"") -> Path:
    """A .tar.gz whose metadata header of `kind` declares `size` bytes of name (or of one
    pax `path` record), streamed through gzip a MiB at a time, then a good release."""
    type_, _ = METADATA[kind]
    record = f"{size} path=".encode() if kind.startswith("pax") else b""
    names = size - len(record) - (1 if record else 0)
    with gzip.open(path, "wb", compresslevel=1) as out:
        out.write(before)
        out.write(header("././@LongLink" if record == b"" else "pax", type_, size))
        out.write(record)
        chunk = b"a" * MiB
        while names > 0:
            out.write(chunk[:names])
            names -= len(chunk)
        out.write(b"\n" if record else b"")
        out.write(padding(size))
        out.write(release_tar())
    return path


@contextlib.contextmanager
def refused_unread() -> Iterator[None]:
    """The block allocates under 4 MiB and ends within 5 s: what a header declares is
    refused, not read."""
    tracemalloc.start()
    started = time.monotonic()
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, f"{peak} bytes allocated while refusing the archive"
    assert time.monotonic() - started < 5


def extract(archive: Path, dest: Path) -> str:
    """The message refusing `archive`, refused unread, with nothing left behind."""
    with refused_unread(), pytest.raises(extraction.ArchiveRefused) as refused:
        extraction.extract(str(archive), str(dest), "1.1.0", "")
    assert not dest.exists() and not dest.with_name(dest.name + ".partial").exists()
    return str(refused.value)


# --- metadata headers --------------------------------------------------------------------


@pytest.mark.parametrize("kind", METADATA)
def test_a_huge_metadata_header_is_refused_before_it_is_read(tmp_path, kind):
    bomb = metadata_bomb(tmp_path / "bomb.tar.gz", kind, 20 * MiB)
    assert bomb.stat().st_size < 200_000  # 20 MiB of name from a few KiB
    message = extract(bomb, tmp_path / "releases" / "1.1.0")
    assert message == (f"member 1 has a {METADATA[kind][1]} header of {20 * MiB} bytes; at most 65536 bytes "
                       "of names and pax headers are read for one member")


def test_an_image_archive_with_a_metadata_bomb_is_refused_unread(tmp_path):
    bomb = metadata_bomb(tmp_path / "scheduler.tar.gz", "pax", 20 * MiB)
    with refused_unread(), pytest.raises(NotAnImageArchive, match=f"^member 1 has a pax extended header of {20 * MiB}"):
        read_image_archive(bomb)


def test_a_chain_of_small_metadata_headers_is_refused(tmp_path):
    # 400 empty pax headers before one member: tarfile reads them recursively, and used
    # to end in a RecursionError (a traceback instead of a refusal).
    chain = b"".join(header("pax", tarfile.XHDTYPE, 0, tarfile.USTAR_FORMAT) for _ in range(400))
    archive = tmp_path / "chain.tar.gz"
    archive.write_bytes(gzip.compress(chain + release_tar()))
    message = extract(archive, tmp_path / "releases" / "1.1.0")
    assert message == "member 1 has more than 8 name and pax headers"


def test_names_and_pax_headers_of_the_whole_archive_are_capped(tmp_path):
    # 300 members, each with a 60 KiB pax record: 18 MiB of metadata, each under its own cap.
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for number in range(300):
            info = tarfile.TarInfo(f"r/f{number}")
            info.pax_headers = {"comment": "c" * 60_000}
            tar.addfile(info, io.BytesIO(b""))
    archive = tmp_path / "wide.tar.gz"
    archive.write_bytes(gzip.compress(stream.getvalue(), compresslevel=1))
    with pytest.raises(extraction.ArchiveRefused,
                       match=r"^the names and pax headers of the archive take more than 16777216 bytes \(at member 28"):
        extraction.extract(str(archive), str(tmp_path / "releases" / "1.1.0"), "1.1.0", "")


@pytest.mark.parametrize(("raw", "expect"), [
    (header("././@LongLink", tarfile.GNUTYPE_LONGNAME, -1024), "member 1 ('././@LongLink') declares a negative size"),
    (header("dunebugger-1.1.0/x", tarfile.REGTYPE, -1024), "member 1 ('dunebugger-1.1.0/x') declares a negative size"),
    (header("dunebugger-1.1.0/holes", tarfile.GNUTYPE_SPARSE, 0), "member 1 ('dunebugger-1.1.0/holes') is a sparse file"),
])
def test_negative_sizes_and_sparse_files_are_refused_at_their_header(tmp_path, raw, expect):
    # A negative size made tarfile read the rest of the stream whole (read(-n)).
    archive = tmp_path / "odd.tar.gz"
    archive.write_bytes(gzip.compress(raw + release_tar()))
    assert extract(archive, tmp_path / "releases" / "1.1.0").startswith(expect)


def test_a_sparse_map_of_any_length_is_never_read(tmp_path):
    # GNU sparse 1.0: a pax header says so, and the map heads the member's data; tarfile
    # read a map of any length into memory (here 2 million numbers).
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        data = b"1000000\n" + b"1\n" * 2_000_000
        info = tarfile.TarInfo("dunebugger-1.1.0/holes")
        info.size = len(data)
        info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "holes",
                            "GNU.sparse.realsize": "1"}
        tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "sparse.tar.gz"
    archive.write_bytes(gzip.compress(stream.getvalue()))
    assert extract(archive, tmp_path / "releases" / "1.1.0") == \
        "member 'dunebugger-1.1.0/holes' is a sparse file, which is not accepted"


def test_a_member_whose_data_is_only_skipped_counts_against_the_cap(tmp_path):
    # An unknown member type: tarfile skips (decompresses) its data to reach the next
    # header, and the cap used to count regular files only.
    bomb = gzip_bomb_tar(tmp_path / "skipped.tar.gz", unpacked_bytes=4 * 1024 * MiB, kind=b"Z")
    message = extract(bomb, tmp_path / "releases" / "1.1.0")
    assert message.startswith("member 'dunebugger-1.1.0/data.bin' takes the unpacked release past the cap")


# --- names -------------------------------------------------------------------------------


def name_member(name: str, *, link: str = "") -> bytes:
    """A member with any name (or link target), pax-encoded when it is long."""
    stream = io.BytesIO()
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        if link:
            info.type, info.linkname = tarfile.SYMTYPE, link
        tar.addfile(info, None if link else io.BytesIO(b""))
    return stream.getvalue()[:-2 * tarfile.BLOCKSIZE]  # without its end-of-archive blocks


@pytest.mark.parametrize(("name", "link", "expect"), [
    ("dunebugger-1.1.0/" + "d/" * 64 + "f", "", "is 66 path components deep; at most 64 are accepted"),
    ("dunebugger-1.1.0/" + "d/" * 1200 + "f", "", "is 1202 path components deep; at most 64 are accepted"),
    ("dunebugger-1.1.0/" + "n" * 256, "", "has a path component longer than 255 bytes"),
    ("dunebugger-1.1.0/" + "long/" * 900, "", "has a name longer than 4096 bytes"),
    ("dunebugger-1.1.0/" + "a" * 60_000, "", "has a name longer than 4096 bytes"),
    ("dunebugger-1.1.0/link", "x/" * 2100, "has a target longer than 4096 bytes"),
])
def test_names_past_the_bounds_are_refused_in_a_short_message(tmp_path, name, link, expect):
    archive = tmp_path / "names.tar.gz"
    archive.write_bytes(gzip.compress(name_member(name, link=link) + release_tar()))
    message = extract(archive, tmp_path / "releases" / "1.1.0")
    assert expect in message
    assert len(message) < 400, message  # the name is cut short


def test_a_release_64_components_deep_is_accepted(tmp_path):
    deepest = "d/" * 62 + "f"  # 64 components with the top directory
    archive = tmp_path / "deep.tar.gz"
    archive.write_bytes(gzip.compress(release_tar(**{deepest: b"x"})))
    extraction.extract(str(archive), str(tmp_path / "releases" / "1.1.0"), "1.1.0", "")
    assert (tmp_path / "releases" / "1.1.0" / deepest).read_bytes() == b"x"


# --- through the updater -------------------------------------------------------------------


def state_bytes(device) -> int:
    return sum(path.stat().st_size for path in device.state.rglob("*") if path.is_file())


async def test_a_metadata_bomb_is_refused_on_the_controller_before_anything_is_sent(device, tmp_path):
    bomb = metadata_bomb(tmp_path / "bomb.tar.gz", "longname", 20 * MiB)
    publish_raw(device, "v1.1.0", archive=bomb.read_bytes())
    before = state_bytes(device)
    result = await assert_refused(device, "refused release archive dunebugger-1.1.0.tar.gz: member 1 has a GNU "
                                          "long name header of 20971520 bytes", dry_run=False)
    assert len(result.message) < 400
    assert state_bytes(device) - before < 100_000  # used to be 260 MiB of run artifacts


async def test_a_metadata_bomb_further_in_is_refused_on_the_device(device, tmp_path):
    # The updater reads the first member's headers only (unless a manifest requires a
    # migration script): the module on the device refuses the second member's.
    first = header("dunebugger-1.1.0/", tarfile.DIRTYPE, 0)
    bomb = metadata_bomb(tmp_path / "bomb.tar.gz", "pax", 20 * MiB, before=first)
    publish_raw(device, "v1.1.0", archive=bomb.read_bytes())
    before = state_bytes(device)
    result = await assert_refused(device, "refused release archive dunebugger-1.1.0.tar.gz: member 2 has a pax "
                                          "extended header of 20971520 bytes", outcome="failed", dry_run=False)
    assert len(result.message) < 500
    assert state_bytes(device) - before < 2 * MiB


async def test_a_name_past_the_bounds_reaches_results_and_history_cut_short(device):
    archive = gzip.compress(name_member("dunebugger-1.1.0/" + "a" * 60_000) + release_tar())
    publish_raw(device, "v1.1.0", archive=archive)
    result = await assert_refused(device, "has a name longer than 4096 bytes", outcome="failed", dry_run=False)
    assert len(result.message) < 600
    assert len((device.state / "history.jsonl").read_text().splitlines()[-1]) < 2 * MAX_TEXT_CHARS
