"""Run the real core playbooks with ansible-playbook against a sandbox device.

Each test gets a plain-directory core 1.0.0 under tmp_path, served by the stand-in
app on its own loopback port and managed by appctl (core_service_manager: command).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from support.attack_kit import HOSTILE_BUILDERS, HOSTILE_MEMBERS, extraction
from support.core_sandbox import Sandbox, build_tiny_wheel, releases, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def sandbox(tmp_path):
    box = start_sandbox(tmp_path)
    yield box
    stop_sandbox(box)


def assert_serving(box: Sandbox, version: str) -> None:
    status, body = box.health()
    assert (status, body.get("version")) == (200, version), box.log()
    assert box.core.is_symlink()
    assert box.core.resolve() == (box.releases / version).resolve()


def test_good_update_switches_link_backs_up_and_records_previous(sandbox, record_property):
    migrate = b'#!/bin/sh\necho "$DUNEBUGGER_PREVIOUS_VERSION" > "$DUNEBUGGER_RELEASE_DIR/migrated"\n'
    archive = releases.build_release(sandbox.dist, "1.1.0",
                                     extra_members={"scripts/migrate.sh": (migrate, 0o755)})
    result = sandbox.update("1.1.0", archive)
    record_property("good_update_seconds", round(result.seconds, 2))
    print(f"good update took {result.seconds:.2f}s")

    assert result.rc == 0, result.output
    assert_serving(sandbox, "1.1.0")
    assert (sandbox.releases / "1.0.0" / "app.py").is_file()  # the plain dir was migrated
    assert (sandbox.releases / ".previous").read_text().strip() == "1.0.0"
    assert (sandbox.releases / "1.1.0" / "migrated").read_text().strip() == "1.0.0"
    assert len(list((sandbox.home / "backups").glob("core-1.0.0-*T*.tar.gz"))) == 1
    assert '"outcome": "updated"' in result.output


@pytest.mark.parametrize("health", ["fail", "crash"])
def test_broken_release_is_rolled_back(sandbox, health):
    archive = releases.build_release(sandbox.dist, "1.1.0", health=health)
    result = sandbox.update("1.1.0", archive)

    assert result.rc != 0
    assert "core update to 1.1.0 failed at '" in result.output
    assert "Rolled back to 1.0.0." in result.output
    assert '"outcome": "rolled_back"' in result.output
    assert_serving(sandbox, "1.0.0")


def test_bad_sha256_changes_nothing(sandbox):
    archive = releases.build_release(sandbox.dist, "1.1.0")
    before, pid = sandbox.tree_hash(), sandbox.pid()
    result = sandbox.update("1.1.0", archive, sha256="0" * 64)

    assert result.rc != 0
    assert "sha256 mismatch" in result.output and "Nothing was changed." in result.output
    assert sandbox.tree_hash() == before
    assert sandbox.pid() == pid and sandbox.health()[1]["version"] == "1.0.0"


PLAYBOOK_HOSTILE_KINDS = ["absolute", "device", "setuid", "symlink", "traversal"]


@pytest.mark.parametrize("kind", PLAYBOOK_HOSTILE_KINDS)
def test_hostile_archive_is_refused_naming_the_member(sandbox, kind):
    archive = HOSTILE_BUILDERS[kind](sandbox.dist, "1.1.0")
    before, pid = sandbox.tree_hash(), sandbox.pid()
    result = sandbox.update("1.1.0", archive)

    assert result.rc != 0
    assert "failed at 'Extract the release safely and create its virtualenv'" in result.output
    assert repr(HOSTILE_MEMBERS[kind]) in result.output
    assert "Nothing was changed." in result.output
    assert sandbox.tree_hash() == before
    assert sandbox.pid() == pid


@pytest.mark.parametrize("kind", sorted(HOSTILE_BUILDERS))
def test_extraction_module_refuses_every_hostile_archive(tmp_path, kind):
    """The extraction module itself, without a playbook run (covers hardlink and fifo too)."""
    archive = HOSTILE_BUILDERS[kind](tmp_path / "dist", "1.1.0")
    dest = tmp_path / "releases" / "1.1.0"
    with pytest.raises(extraction.ArchiveRefused, match=re.escape(repr(HOSTILE_MEMBERS[kind]))):
        extraction.extract(str(archive), str(dest), "1.1.0", "")
    assert not dest.exists()


def test_extraction_module_checks_the_release_version(tmp_path):
    dest = tmp_path / "releases" / "1.1.0"
    wrong = releases.build_release(tmp_path / "dist", "1.2.0")
    with pytest.raises(extraction.ArchiveRefused, match="release VERSION is '1.2.0', expected '1.1.0'"):
        extraction.extract(str(wrong), str(dest), "1.1.0", "")
    assert not dest.exists()

    plain = releases.build_release(tmp_path / "plain", "1.1.0", top_dir=False, omit_version=True)
    result = extraction.extract(str(plain), str(dest), "1.1.0", "")
    assert result["wrote_version_file"] and (dest / "VERSION").read_text() == "1.1.0\n"
    assert (dest / "app.py").is_file()


@pytest.mark.parametrize("version", ["0.9.0", "1.0.0"])
def test_downgrade_or_same_version_is_refused(sandbox, version):
    archive = releases.build_release(sandbox.dist, version)
    before = sandbox.tree_hash()
    result = sandbox.update(version, archive)

    assert result.rc != 0
    assert "Nothing was changed." in result.output and '"outcome": "refused"' in result.output
    assert sandbox.tree_hash() == before


def test_invalid_version_is_refused(sandbox):
    archive = releases.build_release(sandbox.dist, "1.1.0")
    result = sandbox.update("../1.1.0", archive)
    assert result.rc != 0 and "invalid core update inputs" in result.output


def test_rollback_restores_pruned_previous_from_backup_then_is_idempotent(sandbox):
    assert sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0")).rc == 0
    shutil.rmtree(sandbox.releases / "1.0.0")  # as if pruned: only the backup is left

    first = sandbox.rollback()
    assert first.rc == 0, first.output
    assert (sandbox.releases / "1.0.0" / "app.py").is_file(), "the release was restored from its backup"
    assert_serving(sandbox, "1.0.0")
    pid = sandbox.pid()

    second = sandbox.rollback()
    assert second.rc == 0, second.output
    assert second.recap()["changed"] == 0
    assert sandbox.pid() == pid
    assert_serving(sandbox, "1.0.0")


def test_rollback_to_unknown_version_is_refused(sandbox):
    result = sandbox.rollback(core_rollback_version="7.7.7")
    assert result.rc != 0
    assert "neither retained" in result.output and '"outcome": "refused"' in result.output
    assert sandbox.health()[1]["version"] == "1.0.0"


def test_check_mode_runs_the_read_only_checks_and_changes_nothing(sandbox):
    good = releases.build_release(sandbox.dist, "1.1.0")
    before, pid = sandbox.tree_hash(), sandbox.pid()

    checked = sandbox.update("1.1.0", good, "--check")
    assert checked.rc == 0, checked.output
    assert "check mode: the preflight checks for core 1.1.0 passed; nothing was changed" in checked.output
    refused = sandbox.update("1.0.0", good, "--check")  # what preflight refuses, it refuses in check mode too
    assert refused.rc != 0 and '"outcome": "refused"' in refused.output
    assert (sandbox.tree_hash(), sandbox.pid()) == (before, pid)

    assert sandbox.update("1.1.0", good).rc == 0
    before, pid = sandbox.tree_hash(), sandbox.pid()
    rollback = sandbox.rollback("--check")
    assert rollback.rc == 0, rollback.output
    assert "check mode: core can be rolled back to 1.0.0 passed" in rollback.output
    assert sandbox.rollback("--check", core_rollback_version="7.7.7").rc != 0
    assert (sandbox.tree_hash(), sandbox.pid()) == (before, pid)
    assert_serving(sandbox, "1.1.0")


def test_requirements_are_installed_from_local_wheels(sandbox, tmp_path):
    wheels = build_tiny_wheel(tmp_path / "build")
    archive = releases.build_release(sandbox.dist, "1.1.0", requirements=["tinypkg==0.1"])
    result = sandbox.update("1.1.0", archive,
                            core_pip_extra_args=["--no-index", "--find-links", str(wheels)])

    assert result.rc == 0, result.output
    venv_python = sandbox.releases / "1.1.0" / ".venv" / "bin" / "python"
    check = subprocess.run([str(venv_python), "-c", "import tinypkg; print(tinypkg.ANSWER)"],
                           capture_output=True, text=True)
    assert check.stdout.strip() == "42"


def test_failed_requirements_install_changes_nothing(sandbox, tmp_path):
    archive = releases.build_release(sandbox.dist, "1.1.0", requirements=["no-such-package-xyz"])
    before = sandbox.tree_hash()
    result = sandbox.update("1.1.0", archive, core_pip_extra_args=["--no-index"])

    assert result.rc != 0
    assert "failed at 'Extract the release safely and create its virtualenv'" in result.output
    assert "Nothing was changed." in result.output
    assert sandbox.tree_hash() == before


def test_a_missing_required_migration_stops_a_run_by_hand_before_the_switch(sandbox):
    """What a manifest's run_migrations without optional: true asks, checked while staging."""
    archive = releases.build_release(sandbox.dist, "1.1.0")
    before, pid = sandbox.tree_hash(), sandbox.pid()

    run = sandbox.update("1.1.0", archive, core_migration_required=True)

    assert run.rc != 0 and "which its manifest requires" in run.output, run.output
    assert "Nothing was changed" in run.output
    assert sandbox.tree_hash() == before and sandbox.pid() == pid


def test_a_boolean_given_by_hand_as_text_is_read_as_a_boolean(sandbox):
    """`-e core_require_newer=false` on a command line arrives as the text "false"."""
    archive = releases.build_release(sandbox.dist, "0.9.0")

    run = sandbox.update("0.9.0", archive, core_require_newer="false")

    assert run.rc == 0, run.output
    assert_serving(sandbox, "0.9.0")
