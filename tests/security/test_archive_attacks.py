"""Hostile release archives. The extraction module refuses them on the device, after
the download verified their sha256: a failed stage that changed nothing. In-process
checks of the module for every shape, and the real playbooks through ComponentUpdater
for the bomb, a template in a member name or in VERSION, and a migration script that
leaves the release."""

from __future__ import annotations

import importlib.util
import io
import json
import tarfile
from pathlib import Path

import pytest

from attack_kit import assert_refused, gzip_bomb_tar, publish_raw, template_payloads
from dunebugger_updater.playbooks import ROLES_DIR
from dunebugger_updater.sandbox import releases

_spec = importlib.util.spec_from_file_location(
    "core_safe_extract_security", ROLES_DIR / "core_update" / "library" / "core_safe_extract.py")
safe_extract = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(safe_extract)

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
    with pytest.raises(safe_extract.Refused, match="past the cap of 1073741824 bytes"):
        safe_extract.extract(str(bomb), str(dest), "1.1.0", "")
    assert not dest.exists()
    assert sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file()) < 8 * 1024 * 1024


def test_many_members_adding_up_past_the_cap_are_refused(tmp_path):
    members = {f"r/part{i}.bin": bytes(40_000) for i in range(10)}
    archive = tar_gz(tmp_path / "parts.tar.gz", members)
    with pytest.raises(safe_extract.Refused, match="'r/part7.bin' takes the unpacked release past the cap of 300000"):
        safe_extract.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "", max_bytes=300_000)


def test_too_many_members_are_refused(tmp_path):
    archive = tar_gz(tmp_path / "many.tar.gz", {f"r/f{i}": b"" for i in range(60)})
    with pytest.raises(safe_extract.Refused, match="more than 50 members"):
        safe_extract.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "", max_members=50)


def test_a_good_release_is_well_under_the_caps(tmp_path):
    archive = releases.build_release(tmp_path / "dist", "1.1.0")
    result = safe_extract.extract(str(archive), str(tmp_path / "rel" / "1.1.0"), "1.1.0", "")
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
    with pytest.raises(safe_extract.Refused, match=expect):
        safe_extract.extract(str(archive), str(dest), "1.1.0", "scripts/migrate.sh")
    assert not dest.exists()


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
