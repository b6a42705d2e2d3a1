"""Hostile release archives. The extraction module refuses them on the device, after
the download verified their sha256: a failed stage that changed nothing. In-process
checks of the module for every shape (including links that would take a write, a mkdir
or a chmod outside the release), and the real playbooks through ComponentUpdater for
the bomb, a template in a member name or in VERSION, a migration script that leaves
the release, and link tricks aimed at the device's own directories."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from dunebugger_updater.demo.sandbox import releases
from support.attack_kit import (
    Member,
    assert_refused,
    extraction,
    gzip_bomb_tar,
    link_chain,
    publish_raw,
    template_payloads,
    tree_state,
    write_tar,
)

GiB = 1024 * 1024 * 1024


def tar_gz(path: Path, members: dict[str, bytes | tuple[str, str]]) -> Path:
    """members: name -> content, or name -> ("symlink"|"hardlink", target)."""
    with tarfile.open(path, "w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE if content[0] == "symlink" else tarfile.LNKTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o755 if name.endswith(".sh") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return path


def release_members(version: str, top: str = "dunebugger-1.1.0") -> dict[str, bytes]:
    return {f"{top}/{name}": data for name, data in releases.release_files(version).items()}


# --- the module, in-process ------------------------------------------------------------

def test_real_gzip_bomb_is_refused_at_its_header(tmp_path):
    bomb = gzip_bomb_tar(tmp_path / "bomb.tar.gz", unpacked_bytes=2 * GiB)
    assert bomb.stat().st_size < 4 * 1024 * 1024  # ~2 MiB that unpack to 2 GiB
    dest = tmp_path / "releases" / "1.1.0"
    with pytest.raises(extraction.ArchiveRefused, match="past the cap of 1073741824 bytes"):
        extraction.extract(str(bomb), str(dest), "1.1.0", "")
    assert not dest.exists()
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < 8 * 1024 * 1024


def test_many_members_adding_up_past_the_cap_are_refused(tmp_path):
    members = {f"r/part{i}.bin": bytes(40_000) for i in range(10)}
    archive = tar_gz(tmp_path / "parts.tar.gz", members)
    with pytest.raises(extraction.ArchiveRefused, match="'r/part7.bin' takes the unpacked release past the cap of 300000"):
        extraction.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "", max_bytes=300_000)


def test_too_many_members_are_refused(tmp_path):
    archive = tar_gz(tmp_path / "many.tar.gz", {f"r/f{i}": b"" for i in range(60)})
    with pytest.raises(extraction.ArchiveRefused, match="more than 50 members"):
        extraction.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "", max_members=50)


def test_a_good_release_is_well_under_the_caps(tmp_path):
    archive = releases.build_release(tmp_path / "dist", "1.1.0")
    result = extraction.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "")
    assert result["version"] == "1.1.0"


@pytest.mark.parametrize(("members", "expect"), [
    ({"r/VERSION": b"1.1.0\n", "r/scripts/migrate.sh": ("symlink", "/bin/sh")}, "points to absolute path"),
    ({"r/VERSION": b"1.1.0\n", "r/scripts/migrate.sh": ("symlink", "../../../../usr/bin/id")}, "leaves the release"),
    ({"r/VERSION": b"1.1.0\n", "r/scripts": ("symlink", "/usr/bin")}, "points to absolute path"),
    ({"r/VERSION": b"1.1.0\n", "r/x": ("hardlink", "../../etc/shadow")}, "leaves the release"),
    ({"r/VERSION": b"{" * 100_000}, "VERSION is JSON without a usable 'version' key"),
    ({"r/VERSION": json.dumps({"version": "{{ lookup('pipe','id') }}"}).encode()}, "release VERSION is"),
])
def test_hostile_member_shapes_are_refused(tmp_path, members, expect):
    archive = tar_gz(tmp_path / "hostile.tar.gz", members)
    dest = tmp_path / "rel" / "1.1.0"
    with pytest.raises(extraction.ArchiveRefused, match=expect):
        extraction.extract(str(archive), str(dest), "1.1.0", "scripts/migrate.sh")
    assert not dest.exists()


# --- links that would take the extractor outside the release --------------------------


@pytest.fixture
def beside(tmp_path: Path) -> Path:
    """A releases directory beside an `outside` directory (mode 0755, one file)."""
    (tmp_path / "releases").mkdir()
    (tmp_path / "outside").mkdir(mode=0o755)
    (tmp_path / "outside" / "keep.txt").write_text("untouched\n")
    return tmp_path


def refuse_and_compare(beside: Path, members: list[Member], expect: str) -> None:
    """The archive is refused naming `expect`; nothing outside the release changed and
    no release directory is left."""
    dest = beside / "releases" / "1.1.0"
    archive = write_tar(beside / "releases" / "evil.tar", [Member("file", "VERSION", data=b"1.1.0\n"), *members])
    before = tree_state(beside, release=dest)
    with pytest.raises(extraction.ArchiveRefused, match=expect):
        extraction.extract(str(archive), str(dest), "1.1.0", "")
    assert tree_state(beside, release=dest) == before
    assert not dest.exists() and not dest.with_name("1.1.0.partial").exists()


def test_directory_member_named_like_a_link_never_chmods_outside(beside):
    """l2 -> l1/.. is the sandbox and `e -> l2/outside` the outside directory: a directory
    member `e` used to chmod it 0777 (the links were refused only afterwards)."""
    members = [*link_chain(2), Member("symlink", "e", "l2/outside"), Member("dir", "e", mode=0o777)]
    refuse_and_compare(beside, members, "member 'e' repeats the name of an earlier member")
    assert (beside / "outside").stat().st_mode & 0o777 == 0o755


def test_member_below_a_link_creates_nothing_outside(beside):
    """A file below l2 (the sandbox) used to create `outside/planted` before the check."""
    members = [*link_chain(2), Member("file", "l2/outside/planted/evil.txt", data=b"pwned")]
    refuse_and_compare(beside, members, "member 'l2/outside/planted/evil.txt' lies below 'l2', which is not a directory")
    assert not (beside / "outside" / "planted").exists()


def test_member_below_a_link_is_refused_whatever_the_order(beside):
    """The member first, the link of its parent's name after it."""
    members = [Member("file", "a/evil.txt", data=b"pwned"), Member("symlink", "a", ".")]
    refuse_and_compare(beside, members, "member 'a' repeats the name of an earlier member")


def test_chain_of_harmless_looking_links_to_the_root_plants_nothing(beside):
    """Forty links, each lexically inside, reach `/`; a member below the last one named
    the outside directory by its absolute path."""
    planted = beside / "outside" / "planted"
    levels = len(beside.parts) + 1
    members = [*link_chain(levels), Member("file", f"l{levels}{planted}/evil.txt", data=b"pwned")]
    refuse_and_compare(beside, members, f"lies below 'l{levels}', which is not a directory")
    assert not planted.exists()


def test_links_alone_that_reach_the_root_are_refused(beside):
    refuse_and_compare(beside, link_chain(len(beside.parts) + 1), "symlink 'l1' -> 'x/b/..' leaves the release")


@pytest.mark.parametrize(("members", "expect"), [
    ([Member("file", "f", data=b"x"), Member("hardlink", "h", "l1/keep.txt")], "does not point to a regular file"),
    ([Member("hardlink", "h", "f"), Member("file", "f", data=b"x")], "does not point to a regular file"),
    ([Member("file", "f", data=b"x"), Member("file", "f", data=b"y")], "repeats the name of an earlier member"),
    ([Member("file", "f", data=b"x"), Member("dir", "f")], "repeats the name of an earlier member"),
    ([Member("symlink", "VERSION", "x")], "repeats the name of an earlier member"),
], ids=["hardlink-through-a-link", "hardlink-before-its-file", "duplicate-file", "dir-over-file", "second-version"])
def test_links_and_duplicates_that_could_redirect_a_write_are_refused(beside, members, expect):
    refuse_and_compare(beside, [*link_chain(1), *members], expect)


def test_a_version_file_that_is_a_link_is_refused(tmp_path):
    archive = write_tar(tmp_path / "v.tar", [Member("file", "real", data=b"1.1.0\n"), Member("symlink", "VERSION", "real")])
    with pytest.raises(extraction.ArchiveRefused, match="VERSION is not a regular file"):
        extraction.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "")


# --- the real playbooks through ComponentUpdater ---------------------------------------


@pytest.mark.integration
async def test_decompression_bomb_is_refused_on_the_device(device, tmp_path):
    bomb = gzip_bomb_tar(tmp_path / "bomb.tar.gz", unpacked_bytes=2 * GiB)
    publish_raw(device, "v1.1.0", archive=bomb.read_bytes())
    await assert_refused(device, ("refused release archive", "decompression bomb"), outcome="failed", dry_run=False)


@pytest.mark.integration
async def test_template_in_a_member_name_stays_data(device, tmp_path, marker):
    name = "dunebugger-1.1.0/../" + template_payloads(marker)["lookup"]
    archive = tar_gz(tmp_path / "evil.tar.gz", {**release_members("1.1.0"), name: b"x"})
    publish_raw(device, "v1.1.0", archive=archive.read_bytes())
    result = await assert_refused(device, ("contains a '..' component", "lookup('pipe'"), outcome="failed",
                                  dry_run=False, markers=(marker,))
    assert str(marker) in result.message  # the payload came back as text


@pytest.mark.integration
async def test_migration_script_linking_out_of_the_release_is_refused(device, tmp_path):
    members = {**release_members("1.1.0"), "dunebugger-1.1.0/scripts/migrate.sh": ("symlink", "../../../../../bin/sh")}
    archive = tar_gz(tmp_path / "evil.tar.gz", members)
    publish_raw(device, "v1.1.0", archive=archive.read_bytes())
    await assert_refused(device, ("scripts/migrate.sh", "leaves the release"), outcome="failed", dry_run=False)


def device_link_trick(device, kind: str) -> bytes:
    """A release whose links climb from the release to the device home (releases/core/
    <version>.partial is three levels below it) and then act on `backups`."""
    chain = [Member("dir", "dunebugger-1.1.0", mode=0o755),
             *[Member(m.kind, f"dunebugger-1.1.0/{m.name}", m.target, m.data, m.mode) for m in link_chain(3)],
             *[Member("file", name, data=data) for name, data in release_members("1.1.0").items()]]
    if kind == "chmod":
        attack = [Member("symlink", "dunebugger-1.1.0/e", "l3/backups"), Member("dir", "dunebugger-1.1.0/e", mode=0o777)]
    else:
        attack = [Member("file", "dunebugger-1.1.0/l3/backups/planted/evil.txt", data=b"pwned")]
    return write_tar(device.artifacts / f"link-trick-{kind}.tar", [*chain, *attack]).read_bytes()


@pytest.mark.integration
@pytest.mark.parametrize(("kind", "expect"), [("chmod", "repeats the name of an earlier member"),
                                              ("plant", "which is not a directory")])
async def test_link_tricks_refused_while_staging_leave_the_device_as_it_was(device, kind, expect):
    """"Nothing was changed." is a statement about the device: the tree fingerprint (modes
    included) of the whole device home is the same after the failed stage."""
    device.artifacts.mkdir(parents=True, exist_ok=True)
    publish_raw(device, "v1.1.0", archive=device_link_trick(device, kind))
    await assert_refused(device, ("refused release archive", expect), outcome="failed", dry_run=False)
    assert (device.home / "backups").stat().st_mode & 0o777 != 0o777
    assert not (device.home / "backups" / "planted").exists()
