"""What an operation that is refused before any playbook runs says and records: in the
command line's words, with a run id of the one shape, dry runs marked as dry runs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater, Settings, load_settings
from dunebugger_updater.device.history import History
from dunebugger_updater.errors import BadRequest
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater
from dunebugger_updater.statedir import StateDir

pytestmark = pytest.mark.usefixtures("clean_env")

RUN_ID = re.compile(r"^\d{8}T\d{6}-(?P<component>[a-z][a-z0-9_-]*)-(?P<action>[a-z_-]+)-[0-9a-f]{6}$")


def settings_for(tmp_path: Path, api_url: str) -> Settings:
    config = tmp_path / "dunebugger.conf"
    config.write_text(f"[Updater]\ngithubApiUrl = {api_url}\nstatePath = {tmp_path / 'state'}\n"
                      f"coreInstallPath = {tmp_path / 'opt' / 'core'}\nbackupPath = {tmp_path / 'backups'}\n"
                      f"dockerComposePath = {tmp_path / 'compose.yml'}\nhttpTimeoutSeconds = 2\n")
    return load_settings(config, environ={})


async def test_rollback_with_no_previous_release_says_to_name_one(tmp_path, github):
    updater = ComponentUpdater(settings_for(tmp_path, github.url))
    result = await updater.rollback_component("core")
    releases = tmp_path / "opt" / "releases" / "core"
    assert (result.success, result.outcome) == (False, "refused")
    assert result.message == (f"core rollback refused: no previous core release is recorded; name one with --to V "
                              f"(none is retained in {releases}). Nothing was changed.")
    assert "?" not in result.message and "core_rollback_version" not in result.message
    (entry,) = updater.get_history()
    assert (entry.run_id, entry.action, entry.outcome) == (result.run_id, "rollback", "refused")
    assert RUN_ID.fullmatch(entry.run_id)["action"] == "rollback"
    assert not any((tmp_path / "state" / "runs").iterdir()), "no playbook may run"


async def test_rollback_lists_the_retained_and_backed_up_versions(tmp_path, github):
    releases = tmp_path / "opt" / "releases" / "core"
    for version in ("1.10.0", "1.2.0", ".staging"):
        (releases / version).mkdir(parents=True)
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "core-0.9.0-20260101T000000.tar.gz").write_bytes(b"")
    result = await ComponentUpdater(settings_for(tmp_path, github.url)).rollback_component("core")
    assert "name one with --to V (retained: 0.9.0, 1.2.0, 1.10.0)" in result.message


@pytest.mark.parametrize("dry_run", [True, False])
async def test_a_refused_update_has_a_run_id_and_a_dry_run_says_so(tmp_path, dry_run):
    updater = ComponentUpdater(settings_for(tmp_path, "http://127.0.0.1:9"))  # nothing listens there
    result = await updater.update_component("core", dry_run=dry_run)
    assert (result.success, result.outcome, result.dry_run) == (False, "refused", dry_run)
    (entry,) = updater.get_history()
    action = "dry_run" if dry_run else "update"
    assert (entry.run_id, entry.action) == (result.run_id, action)
    assert RUN_ID.fullmatch(entry.run_id).group("component", "action") == ("core", action)
    assert result.body()["run_id"] == entry.run_id and result.body()["dry_run"] is dry_run


LONG_WAITS = (b'version: "1.1.0"\ncomponent_type: "python_app"\npost_update_checks:\n'
              b'  - type: "service_active"\n    timeout_seconds: 3600\n')


@pytest.mark.parametrize(("manifest", "reason"), [
    (b'version: "1.0.5"\ncomponent_type: "python_app"\n', "the manifest says 1.0.5 but the release tag is 1.1.0"),
    (LONG_WAITS, "longer than a run may take (playbookTimeoutMinutes = 30, 1800 s)"),
    (None, "1.1.0-beta is older than the running 1.1.0; update never goes back"),
], ids=["manifest", "deadline", "older"])
async def test_a_refused_update_says_which_version_runs(tmp_path, github, manifest, reason):
    settings = settings_for(tmp_path, github.url)
    if manifest is None:  # a prerelease, as the release names it, asked for where prereleases are allowed
        settings = dataclasses.replace(settings, include_prerelease=True)
    (tmp_path / "opt" / "core").mkdir(parents=True)
    (tmp_path / "opt" / "core" / "VERSION").write_text("1.1.0\n" if manifest is None else "1.0.0\n")
    github.add_release("marco-svitol/dunebugger", "v1.1.0-beta" if manifest is None else "v1.1.0", manifest=manifest)
    updater = ComponentUpdater(settings)

    result = await updater.update_component("core", version="1.1.0-beta" if manifest is None else None)

    assert (result.outcome, result.from_version) == ("refused", "1.1.0" if manifest is None else "1.0.0")
    assert reason in result.message, result.message
    (entry,) = updater.get_history()
    assert entry.from_version == result.from_version


async def test_a_fleet_dry_run_has_a_run_id_of_the_one_shape(tmp_path, github):
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("all:\n  hosts:\n    device1:\n      ansible_connection: local\n")
    result = await FleetUpdater(settings_for(tmp_path, github.url)).update("core", FleetTarget(inventory), dry_run=True)
    assert not result.success and "no release" in result.message, result.message
    (entry,) = History(StateDir(tmp_path / "state")).entries()
    assert RUN_ID.fullmatch(entry.run_id).group("component", "action") == ("core", "fleet_dry_run"), entry.run_id


@pytest.mark.parametrize(("name", "problem"), [("missing.yml", "does not exist"),
                                              (".", "is a directory: name the inventory file (-i FILE)")])
def test_a_fleet_inventory_that_is_not_a_file_is_named(tmp_path, name, problem):
    inventory = (tmp_path / name).resolve()
    with pytest.raises(BadRequest, match=re.escape(f"inventory {inventory} {problem}")):
        FleetTarget(inventory).checked()
