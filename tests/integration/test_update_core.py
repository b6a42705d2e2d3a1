"""core updates through the Python layer: real releases on the loopback GitHub, real
downloads, the real playbooks through ansible-runner, a real stand-in service."""

from __future__ import annotations

import hashlib

import pytest

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.device.lock import DeviceLock
from dunebugger_updater.statedir import StateDir
from support.attack_kit import HOSTILE_MEMBERS, build_traversal_archive
from support.cli import run_cli, run_cli_json

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


async def test_dry_run_verifies_and_changes_nothing(device):
    device.publish("1.1.0")
    before, pid = device.fingerprint(), device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core", dry_run=True)

    assert result.success and result.dry_run and result.outcome == "dry_run"
    assert result.details["verified"] is True and result.details["sha256_source"] == "release asset digest"
    assert result.details["checks"]["health_url"] == device.health_url
    assert "nothing was changed" in result.message
    assert device.fingerprint() == before
    assert device.app_pid() == pid, "a dry run must not restart the service"


async def test_update_then_unhealthy_release_rolls_back(device):
    device.publish("1.1.0")
    updater = ComponentUpdater(device.settings())
    progress: list[dict] = []
    updater.add_listener(progress.append)

    good = await updater.update_component("core")
    assert (good.success, good.outcome, good.message) == (True, "updated", "Updated core to 1.1.0")
    assert device.health()["version"] == "1.1.0"
    assert (device.home / "core").is_symlink()
    steps = [message["body"]["step"] for message in progress]
    assert steps[0] == "preflight" and steps[-1] == "finalize" and "switch" in steps
    assert all(m["subject"] == "updater_progress" and m["body"]["total"] == 5 for m in progress)

    device.publish("1.2.0", health="fail")
    bad = await updater.update_component("core")
    assert not bad.success and bad.rolled_back
    assert "Rolled back to 1.1.0" in bad.message and "health" in bad.message
    assert device.health()["version"] == "1.1.0"

    history = updater.get_history()
    assert [(e.action, e.outcome, e.to_version) for e in history] == [
        ("update", "updated", "1.1.0"), ("update", "rolled_back", "1.2.0")]


async def test_up_to_date_is_a_success_that_runs_nothing(device):
    device.publish("1.0.0")
    result = await ComponentUpdater(device.settings()).update_component("core")
    assert (result.success, result.outcome) == (True, "up_to_date")
    assert not any((device.state / "runs").iterdir()), "no playbook run was started"


async def test_bad_checksum_is_refused_before_anything_changes(device):
    archive = releases.build_release(device.artifacts, "1.1.0")
    device.github.add_release("marco-svitol/dunebugger", "v1.1.0",
                              assets={"dunebugger-1.1.0.tar.gz": archive.read_bytes()},
                              digests={"dunebugger-1.1.0.tar.gz": "sha256:" + "0" * 64})
    before, pid = device.fingerprint(), device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert (result.success, result.outcome) == (False, "refused")
    assert "sha256 mismatch" in result.message and "Nothing was changed" in result.message
    assert device.fingerprint() == before and device.app_pid() == pid


async def test_release_without_any_checksum_is_refused(device):
    archive = releases.build_release(device.artifacts, "1.1.0")
    device.github.add_release("marco-svitol/dunebugger", "v1.1.0",
                              assets={"dunebugger-1.1.0.tar.gz": archive.read_bytes()},
                              digests={"dunebugger-1.1.0.tar.gz": None})
    result = await ComponentUpdater(device.settings()).update_component("core")
    assert result.outcome == "refused" and "no sha256 is known" in result.message


async def test_hostile_archive_is_refused_naming_the_member(device):
    archive = build_traversal_archive(device.artifacts, "1.1.0")
    device.publish_archive("1.1.0", archive)
    before, pid = device.fingerprint(), device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core")

    # The archive is checked on the device, after preflight: a failed stage, not a refusal.
    assert not result.success and result.outcome == "failed"
    assert HOSTILE_MEMBERS["traversal"] in result.message
    assert "Nothing was changed" in result.message
    assert device.fingerprint() == before and device.app_pid() == pid


async def test_manifest_checksum_is_used_and_a_mismatch_refused(device):
    archive = releases.build_release(device.artifacts, "1.1.0")
    wrong = "sha256:" + hashlib.sha256(b"something else").hexdigest()
    manifest = (
        'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n'
        '  - action: "download_artifact"\n'
        f'    url: "{device.github.asset_url("marco-svitol/dunebugger", "v1.1.0", "dunebugger-1.1.0.tar.gz")}"\n'
        f'    checksum: "{wrong}"\n'
    ).encode()
    device.github.add_release("marco-svitol/dunebugger", "v1.1.0",
                              assets={"dunebugger-1.1.0.tar.gz": archive.read_bytes()}, manifest=manifest)
    result = await ComponentUpdater(device.settings()).update_component("core", dry_run=True)
    assert result.outcome == "refused" and "sha256 mismatch" in result.message and result.manifest == "manifest used"


@pytest.mark.parametrize(("manifest", "expect_outcome", "expect_text"), [
    (b"version: [unclosed", "dry_run", "invalid manifest"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n  - action: "format_disk"\n',
     "dry_run", "unknown action 'format_disk'"),
    (b'version: "1.0.5"\ncomponent_type: "python_app"\n', "refused", "the release tag is 1.1.0"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n'
     b'  - action: "run_migrations"\n    script: "/usr/bin/evil.sh"\n', "refused", "outside the release"),
])
async def test_manifest_problems(device, manifest, expect_outcome, expect_text):
    device.publish("1.1.0", manifest=manifest)
    result = await ComponentUpdater(device.settings()).update_component("core", dry_run=True)
    assert result.outcome == expect_outcome
    assert expect_text in (result.manifest + result.message)


async def test_downgrade_through_update_is_refused(device):
    device.publish("0.9.0")
    result = await ComponentUpdater(device.settings()).update_component("core", version="0.9.0")
    assert result.outcome == "refused" and "never goes back" in result.message


async def test_second_update_while_one_runs_is_busy(device):
    device.publish("1.1.0")
    holder = DeviceLock(StateDir(device.state))
    holder.acquire("update of core")
    try:
        from dunebugger_updater.errors import Busy

        with pytest.raises(Busy, match="busy: update of core"):
            await ComponentUpdater(device.settings()).update_component("core")
    finally:
        holder.release()


async def test_rollback_to_previous_and_again_is_idempotent(device):
    device.publish("1.1.0")
    updater = ComponentUpdater(device.settings())
    assert (await updater.update_component("core")).success

    back = await updater.rollback_component("core")
    assert (back.success, back.outcome, back.to_version) == (True, "rolled_back", "1.0.0")
    assert device.health()["version"] == "1.0.0"
    pid = device.app_pid()

    again = await updater.rollback_component("core", to="1.0.0")
    assert (again.success, again.outcome) == (True, "up_to_date")
    assert device.app_pid() == pid, "an idempotent rollback must not restart the service"


def test_cli_update_exit_codes_and_json(device):
    device.publish("1.1.0")
    status, dry = run_cli_json("update", "core", "--dry-run", config=device.config)
    assert status == 0, dry
    assert dry["body"]["dry_run"] is True

    device.publish("1.2.0", health="crash")
    status, rolled = run_cli_json("update", "core", "--version", "1.2.0", config=device.config)
    assert status == 1
    assert rolled["body"]["rolled_back"] is True
    assert device.health()["version"] == "1.0.0"

    assert run_cli("update", "core", "--version", "not-a-version", config=device.config).returncode == 2
    assert run_cli("update", "nope", config=device.config).returncode == 2

    _, history = run_cli_json("history", config=device.config)
    assert [e["outcome"] for e in history["body"]["entries"]] == ["dry_run", "rolled_back"]


async def test_release_needing_a_newer_remote_says_update_remote_first(device):
    (device.home / "docker-compose.yml").write_text(
        "services:\n  remote:\n    image: ghcr.io/marco-svitol/dunebugger-remote:1.0.0\n")
    manifest = b'version: "1.1.0"\ncomponent_type: "python_app"\nmin_remote_version: "2.0.0"\n'
    device.publish("1.1.0", manifest=manifest)
    before = device.fingerprint()

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert result.outcome == "refused"
    assert "needs remote 2.0.0 or newer (running 1.0.0): update remote first" in result.message
    assert device.fingerprint() == before
