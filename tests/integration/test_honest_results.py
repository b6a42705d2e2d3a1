"""Results that are statements about the device: what `update_result` says is what the
device runs, checked on the device itself (version, health, process), for the cases
where a rollback or a deadline used to leave the two apart."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo import free_port
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.device import processes

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


def core_manifest(version: str, post_checks: str = "", pre_checks: str = "", steps: str = "") -> bytes:
    text = f'version: "{version}"\ncomponent_type: "python_app"\n'
    if pre_checks:
        text += "pre_update_checks:\n" + pre_checks
    if steps:
        text += "update_steps:\n" + steps
    if post_checks:
        text += "post_update_checks:\n" + post_checks
    return text.encode()


async def test_rollback_is_verified_with_the_restored_releases_own_checks(device):
    """The new release's manifest names a health endpoint that never answers: the update
    fails, and the restored 1.0.0 is verified with the device's own health URL, not with
    the failed release's, so the result says rolled back, as the device shows."""
    dead = f"http://127.0.0.1:{free_port()}/health"
    device.publish("1.1.0", manifest=core_manifest("1.1.0", post_checks=(
        f'  - type: "health_endpoint"\n    url: "{dead}"\n    timeout_seconds: 2\n')))
    old_pid = device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert (result.success, result.outcome, result.rolled_back) == (False, "rolled_back", True), result.message
    assert "Rolled back to 1.0.0" in result.message and dead in result.message
    assert "FAILED" not in result.message
    assert device.health()["version"] == "1.0.0"
    assert device.app_pid() != old_pid, "the restored release was restarted"


async def test_a_run_stopped_at_its_deadline_after_the_switch_is_rolled_back(device):
    """The release's migration script hangs after the service was stopped and the link
    switched. The run's deadline stops it - every process of the run, the hanging script
    included - and the rollback playbook brings 1.0.0 back, verified, before the journal
    is cleared."""
    hang = b'#!/bin/sh\necho $$ > "$DUNEBUGGER_RELEASE_DIR/migrate.pid"\nexec sleep 600\n'
    archive = releases.build_release(device.artifacts, "1.1.0", extra_members={"scripts/migrate.sh": (hang, 0o755)})
    device.publish_archive("1.1.0", archive)
    settings = device.settings({"UPDATER_PLAYBOOKTIMEOUTMINUTES": "0.75"})
    began = time.monotonic()

    result = await ComponentUpdater(settings).update_component("core")

    elapsed = time.monotonic() - began
    assert (result.success, result.outcome, result.rolled_back) == (False, "rolled_back", True), result.message
    assert "stopped at its deadline" in result.message and "during 'Back up, stop, switch" in result.message
    assert "runs 1.0.0 again" in result.message
    assert device.health()["version"] == "1.0.0"
    assert not (device.state / "journal.json").exists(), "the device is settled: no journal left"
    hung = int((device.home / "releases" / "core" / "1.1.0" / "migrate.pid").read_text())
    assert not processes.alive(hung), "the hanging migration script was ended with its run"
    leftovers = [pid for pid in processes.tree(1) if _mentions(pid, str(device.state / "runs"))]
    assert leftovers == [], "no process of the run is left"
    assert 45 <= elapsed < 45 + 60
    assert [(e.action, e.outcome) for e in ComponentUpdater(settings).get_history()] == [("update", "rolled_back")]


async def test_checks_that_cannot_fit_into_the_deadline_are_refused_before_anything_changes(device):
    device.publish("1.1.0", manifest=core_manifest("1.1.0", post_checks=(
        f'  - type: "health_endpoint"\n    url: "{device.health_url}"\n    timeout_seconds: 3600\n')))
    before, pid = device.fingerprint(), device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert (result.success, result.outcome) == (False, "refused")
    assert "post_update_checks health_endpoint timeout_seconds 3600 s" in result.message
    assert "playbookTimeoutMinutes = 30" in result.message and "Nothing was changed" in result.message
    assert device.fingerprint() == before and device.app_pid() == pid


def _mentions(pid: int, text: str) -> bool:
    try:
        return text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.parametrize("failure", ["unhealthy", "migration fails"])
async def test_after_a_rolled_back_update_rollback_still_goes_one_release_back(device, failure):
    """1.0.0 → 1.1.0, then 1.2.0 fails after the switch and is rolled back (by the play's
    rescue, or undone inside the switch when its migration fails): `.previous` says 1.0.0 again,
    as it did before 1.2.0, so a plain `rollback` goes to 1.0.0 instead of answering that
    1.1.0 already runs."""
    updater = ComponentUpdater(device.settings())
    device.publish("1.1.0")
    assert (await updater.update_component("core")).outcome == "updated"
    if failure == "unhealthy":
        device.publish("1.2.0", health="fail")
    else:  # the migration fails inside the switch: the module puts 1.1.0 back itself
        archive = releases.build_release(device.artifacts, "1.2.0", extra_members={
            "scripts/migrate.sh": (b"#!/bin/sh\necho no >&2\nexit 3\n", 0o755)})
        device.publish_archive("1.2.0", archive)
    previous = device.home / "releases" / "core" / ".previous"

    failed = await updater.update_component("core")

    assert (failed.outcome, failed.rolled_back) == ("rolled_back", True), failed.message
    assert device.health()["version"] == "1.1.0"
    assert previous.read_text().strip() == "1.0.0"
    back = await updater.rollback_component("core")
    assert (back.success, back.outcome, back.to_version) == (True, "rolled_back", "1.0.0"), back.message
    assert device.health()["version"] == "1.0.0"


async def test_a_release_that_dies_soon_after_its_start_is_rolled_back_when_it_must_settle_longer(device):
    """It answers its health URL, then exits 1.5 s after its start: with the default settle
    (0.5 s after the start) that passes; `settleSeconds = 3` catches it."""
    device.publish_archive("1.1.0", releases.build_release(device.artifacts, "1.1.0", health="exit-after 1.5"))
    device.config.write_text(device.config.read_text().replace("python =", "settleSeconds = 3\npython =", 1))

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert (result.success, result.outcome, result.rolled_back) == (False, "rolled_back", True), result.message
    assert "not active 3s after its start (it stopped)" in result.message, result.message
    assert device.health()["version"] == "1.0.0"
