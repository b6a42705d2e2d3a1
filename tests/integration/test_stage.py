"""The stage of a core update (core_stage) and the prune after it (core_verify), run as
plain Python on real files, real venvs and a real pip: what a failure leaves behind, what
a release may not ship, what the installer says."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import ansible.module_utils
import pytest

from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.device.installed import retained_releases
from dunebugger_updater.device.playbooks import ROLES_DIR
from support.core_sandbox import build_tiny_wheel

ansible.module_utils.__path__.append(str(ROLES_DIR / "core_common" / "module_utils"))
_spec = importlib.util.spec_from_file_location("core_stage_module", ROLES_DIR / "core_update" / "library" / "core_stage.py")
core_stage = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(core_stage)
core = importlib.import_module("ansible.module_utils.dunebugger_core")
extraction = importlib.import_module("ansible.module_utils.dunebugger_extract")

pytestmark = pytest.mark.integration


def params(archive: Path, **changes: object) -> dict[str, object]:
    return {
        "src": str(archive), "sha256": None, "expected_version": "1.1.0", "migration_script": "",
        "migration_required": False, "max_bytes": extraction.DEFAULT_MAX_BYTES,
        "max_members": extraction.DEFAULT_MAX_MEMBERS, "python": sys.executable, "venv_args": [],
        "pip_args": ["--no-index"], "installer": "pip", **changes,
    }  # fmt: skip


def kept_for_a_rollback(releases_dir: Path) -> Path:
    """releases/1.1.0 as a rollback left it: a release of the version about to be staged."""
    kept = releases_dir / "1.1.0"
    (kept / ".venv").mkdir(parents=True)
    (kept / "VERSION").write_text("1.1.0\n")
    (kept / "kept-for-rollback").write_text("the release that ran\n")
    return kept


def test_a_release_that_ships_a_venv_is_refused_before_anything_is_written(tmp_path):
    python = (b"#!/bin/sh\ntouch /tmp/ran\n", 0o755)
    archive = releases.build_release(tmp_path / "dist", "1.1.0", extra_members={".venv/bin/python": python})
    dest = tmp_path / "releases" / "1.1.0"
    dest.parent.mkdir()

    with pytest.raises(extraction.ArchiveRefused, match=r"lies in \.venv, the virtualenv the updater creates"):
        extraction.extract(str(archive), str(dest), "1.1.0", "")
    assert list(dest.parent.iterdir()) == []


def test_a_failed_stage_puts_back_the_release_of_that_version_kept_for_a_rollback(tmp_path):
    archive = releases.build_release(tmp_path / "dist", "1.1.0")
    kept = kept_for_a_rollback(tmp_path / "releases")

    with pytest.raises(core_stage.InstallError, match="cannot run /nonexistent/python3"):
        core_stage.stage_or_undo(params(archive, python="/nonexistent/python3"), str(kept), None)

    assert (kept / "kept-for-rollback").is_file(), "the release kept for a rollback is gone"
    assert sorted(path.name for path in kept.parent.iterdir()) == ["1.1.0"]
    assert retained_releases(kept.parent, tmp_path / "backups") == ["1.1.0"]


def test_a_release_set_aside_by_a_killed_stage_wins_over_what_that_stage_left(tmp_path):
    archive = releases.build_release(tmp_path / "dist", "1.1.0")
    kept = kept_for_a_rollback(tmp_path / "releases")
    kept.rename(kept.parent / ".1.1.0.kept")  # set aside, then killed mid-extraction
    (kept / "half").mkdir(parents=True)

    with pytest.raises(core_stage.InstallError):
        core_stage.stage_or_undo(params(archive, python="/nonexistent/python3"), str(kept), None)
    assert (kept / "kept-for-rollback").is_file() and not (kept / "half").exists()

    result = core_stage.stage_or_undo(params(archive), str(kept), None)  # and a stage that works replaces it
    assert result["version"] == "1.1.0" and result["installer"] == "none"
    assert not (kept / "kept-for-rollback").exists() and (kept / ".venv" / "bin" / "python").exists()
    assert sorted(path.name for path in kept.parent.iterdir()) == ["1.1.0"]


def test_requirements_may_name_files_of_the_release_by_relative_path(tmp_path):
    (wheel,) = build_tiny_wheel(tmp_path / "build").iterdir()
    archive = releases.build_release(
        tmp_path / "dist", "1.1.0", requirements=[f"./wheels/{wheel.name}"],
        extra_members={f"wheels/{wheel.name}": wheel.read_bytes()})  # fmt: skip
    dest = tmp_path / "releases" / "1.1.0"

    result = core_stage.stage_or_undo(params(archive), str(dest), None)

    assert result["installer"] == "pip"
    answer = subprocess.run([str(dest / ".venv" / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.ANSWER)"],
                            capture_output=True, text=True, check=True)  # fmt: skip
    assert answer.stdout.strip() == "42"


def test_a_failed_install_says_what_pip_said_was_wrong(tmp_path):
    archive = releases.build_release(tmp_path / "dist", "1.1.0", requirements=["six=="])
    dest = tmp_path / "releases" / "1.1.0"

    with pytest.raises(core_stage.InstallError) as failed:
        core_stage.stage_or_undo(params(archive), str(dest), str(dest.parent))

    assert "ERROR: Invalid requirement: 'six=='" in str(failed.value), str(failed.value)
    assert not dest.parent.exists(), "the stage created the releases directory: it goes with the failure"


def test_a_release_that_will_not_go_all_the_way_is_never_left_looking_like_one(tmp_path):
    root = tmp_path / "releases"
    busy = root / "0.6.0" / "data"  # a mount point: its files go, the directory itself cannot (EBUSY)
    busy.mkdir(parents=True)
    for age, version in enumerate(("0.5.0", "0.6.0", "0.7.0", "1.0.0", "1.1.0")):
        (root / version).mkdir(exist_ok=True)
        (root / version / "VERSION").write_text(f"{version}\n")
        os.utime(root / version, (1_000_000 + age, 1_000_000 + age))
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(busy)], check=True)
    try:
        removed, warnings = core.prune_releases(str(root), 3, ["1.1.0", "1.0.0"])

        assert removed == [str(root / "0.5.0")], removed
        (warning,) = warnings
        assert f"cannot remove old release {root / '0.6.0'} (left as {root / '.0.6.0.pruning'})" in warning
        assert retained_releases(root, tmp_path / "backups") == ["0.7.0", "1.0.0", "1.1.0"]
    finally:
        for mounted in (busy, root / ".0.6.0.pruning" / "data"):
            subprocess.run(["umount", "-l", str(mounted)], capture_output=True, check=False)

    assert core.prune_releases(str(root), 3, ["1.1.0", "1.0.0"]) == ([], [])  # the next prune ends it
    assert sorted(path.name for path in root.iterdir()) == ["0.7.0", "1.0.0", "1.1.0"]
