"""A prerelease is known by its version, not only by the API's flag: with
includePrerelease false, `v1.2.0-beta` marked `prerelease: false` (the flag is whatever
the publisher, or a hostile API, says) is never picked as the newest release, never
installed by `--version`, and never put in a bundle; a file or bundle on the device
holding one is refused the same way. Every place that picks a release is tried: the
check, an update, an update of one version, a fleet update, a bundle, a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.bundle.maker import BundleMaker, Wanted
from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.errors import DownloadError
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater
from dunebugger_updater.release.local import LocalSource
from support.attack_kit import assert_refused, attempt

pytestmark = pytest.mark.integration

PRERELEASES = ["1.2.0-beta", "1.2.0rc1", "1.2.0-beta.1", "1.2.0.dev1"]
WITH_PRERELEASES = {"UPDATER_INCLUDEPRERELEASE": "true"}


def publish_unflagged(device: DemoDevice, prerelease: str) -> None:
    """1.1.0, then a prerelease that the API calls a release (GitHub's "latest" is it)."""
    device.publish("1.1.0")
    device.publish(prerelease, prerelease=False)


@pytest.mark.parametrize("prerelease", PRERELEASES)
async def test_an_unflagged_prerelease_is_not_the_newest_release(device, prerelease):
    publish_unflagged(device, prerelease)

    status = (await ComponentUpdater(device.settings()).check_updates(force=True))["core"]
    result, _ = await attempt(device)

    assert (status.latest_version, status.error) == ("1.1.0", None)
    assert (result.success, result.outcome, result.to_version) == (True, "dry_run", "1.1.0"), result.message


async def test_with_include_prerelease_the_unflagged_prerelease_is_the_newest(device):
    publish_unflagged(device, "1.2.0-beta")
    result, _ = await attempt(device, environ=WITH_PRERELEASES)
    assert (result.success, result.to_version) == (True, "1.2.0-beta"), result.message


async def test_only_prereleases_is_no_release(device):
    device.publish("1.2.0-beta", prerelease=False)
    await assert_refused(device, "the repository has no published release that is not a prerelease")


@pytest.mark.parametrize("prerelease", PRERELEASES)
async def test_a_prerelease_asked_for_by_version_needs_include_prerelease(device, prerelease):
    publish_unflagged(device, prerelease)
    await assert_refused(device, (f"release v{prerelease} is a prerelease, and includePrerelease is false: "
                                  "set includePrerelease = true"), version=prerelease)
    allowed, _ = await attempt(device, version=prerelease, environ=WITH_PRERELEASES)
    assert allowed.success, allowed.message


async def test_a_fleet_update_never_picks_an_unflagged_prerelease(device, tmp_path):
    publish_unflagged(device, "1.2.0-beta")
    inventory = tmp_path / "inventory.yml"  # one device nobody answers for: the plan is what counts
    inventory.write_text("all:\n  hosts:\n    nowhere:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n")
    fleet = FleetUpdater(device.settings())

    newest = await fleet.check("core", FleetTarget(inventory))
    planned = await fleet.update("core", FleetTarget(inventory), dry_run=True)
    asked = await fleet.update("core", FleetTarget(inventory), version="1.2.0-beta", dry_run=True)

    assert newest.latest == "1.1.0"
    assert planned.version == "1.1.0", planned.message
    assert not asked.success and "release v1.2.0-beta is a prerelease" in asked.message


async def test_a_bundle_never_holds_an_unflagged_prerelease(device, tmp_path):
    publish_unflagged(device, "1.2.0-beta")
    maker = BundleMaker(device.settings({"UPDATER_STATEPATH": str(tmp_path / "state")}))

    (entry,) = await maker.create([Wanted("core")], tmp_path / "bundle")
    with pytest.raises(DownloadError, match="release v1.2.0-beta is a prerelease"):
        await maker.create([Wanted("core", "1.2.0-beta")], tmp_path / "beta-bundle")

    assert entry.version == "1.1.0"
    assert not (tmp_path / "beta-bundle").exists()


async def test_a_prerelease_in_a_file_needs_include_prerelease(device):
    device.publish("1.2.0-beta")
    archive = device.artifacts / "dunebugger-1.2.0-beta.tar.gz"
    updater = ComponentUpdater(device.settings())

    result = await updater.update_component("core", dry_run=True, source=LocalSource(archive, sha256=sha256(archive)))

    assert (result.success, result.outcome) == (False, "refused")
    assert "release 1.2.0-beta is a prerelease, and includePrerelease is false" in result.message


def sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()
