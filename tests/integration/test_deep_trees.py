"""Trees deeper than Python's recursion limit on the device: a `.partial` left by an
earlier updater, a release installed by one (nothing refused a 980-deep archive then),
a wheel that unpacks deep. shutil.rmtree, tarfile's recursive add and Ansible's `file
state=absent` recurse, and failed on them: every later update was rolled back at the
prune, or failed at the backup. Removal, backups and pruning must work whatever the
depth; the real playbooks run on the sandbox device."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dunebugger_updater.roles.core_common.module_utils.dunebugger_files import remove_tree
from support.core_sandbox import releases, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration

DEEP = 1500  # levels: beyond the recursion limit (1000), and beyond PATH_MAX (4096) for a path


def plant_deep_tree(top: Path, levels: int = DEEP) -> Path:
    """top/d/d/.../d, each level with a file and a link to /etc, made relative to
    directory descriptors (no path could name the deepest levels)."""
    top.mkdir(parents=True)
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(levels):
            os.mkdir("d", dir_fd=fd)
            os.close(os.open("f", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
            os.symlink("/etc", "etc", dir_fd=fd)
            child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)
    return top


def test_a_tree_of_any_depth_is_removed_without_following_its_links(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep").write_text("kept\n")
    tree = plant_deep_tree(tmp_path / "tree")
    os.symlink(outside, tree / "d" / "to-outside")
    wide = tmp_path / "wide"
    for number in range(2000):
        (wide / f"d{number}").mkdir(parents=True)
        (wide / f"f{number}").write_text("x")

    for path in (tree, wide, tmp_path / "missing"):
        remove_tree(str(path))

    assert sorted(os.listdir(tmp_path)) == ["outside"]
    assert (outside / "keep").read_text() == "kept\n"


@pytest.fixture
def sandbox(tmp_path):
    box = start_sandbox(tmp_path)
    yield box
    stop_sandbox(box)


def test_a_deep_partial_left_by_an_earlier_updater_never_breaks_an_update(sandbox):
    plant_deep_tree(sandbox.releases / "1.1.0.partial")  # this update's own staging name
    plant_deep_tree(sandbox.releases / "0.9.0.partial")  # another one, for the prune

    result = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"))

    assert result.rc == 0, result.output
    assert sandbox.health()[1]["version"] == "1.1.0"
    assert not [name for name in os.listdir(sandbox.releases) if name.endswith(".partial")]


def test_a_deep_tree_in_the_running_release_is_backed_up_and_pruned(sandbox):
    plant_deep_tree(sandbox.core / "cache", levels=1100)  # deep, yet within PATH_MAX for tarfile

    first = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"), core_releases_keep=1)
    assert first.rc == 0, first.output
    (backup,) = (sandbox.home / "backups").glob("core-1.0.0-*.tar.gz")
    assert backup.stat().st_size > 0

    second = sandbox.update("1.2.0", releases.build_release(sandbox.dist, "1.2.0"), core_releases_keep=1)
    assert second.rc == 0, second.output
    assert sorted(name for name in os.listdir(sandbox.releases) if not name.startswith(".")) == ["1.1.0", "1.2.0"]


def test_a_failed_stage_removes_a_deep_partial_it_finds(sandbox):
    # The archive is refused before extraction starts; the rescue then removes what this
    # run may have staged, a deep .partial left by an earlier updater included.
    plant_deep_tree(sandbox.releases / "1.1.0.partial")
    pid = sandbox.pid()

    result = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"), sha256="0" * 64)

    assert result.rc != 0
    assert "sha256 mismatch" in result.output and "Nothing was changed." in result.output, result.output
    assert os.listdir(sandbox.releases) == []
    assert sandbox.pid() == pid and sandbox.health()[1]["version"] == "1.0.0"
