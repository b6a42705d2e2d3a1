"""Fleet runs are recorded in the controller's history, refused ones included."""

from __future__ import annotations

import pytest

from dunebugger_updater import load_settings
from dunebugger_updater.device.history import History
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater
from dunebugger_updater.statedir import StateDir

pytestmark = pytest.mark.usefixtures("clean_env")


async def test_refused_fleet_update_is_in_the_history(tmp_path, github):
    inventory = tmp_path / "fleet.yml"
    inventory.write_text("all:\n  hosts:\n    device1:\n      ansible_host: 127.0.0.1\n")
    config = tmp_path / "dunebugger.conf"
    config.write_text(f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {tmp_path / 'state'}\n")
    settings = load_settings(config, environ={})

    result = await FleetUpdater(settings).update("core", FleetTarget(inventory))

    assert not result.success and "refused" in result.message
    (entry,) = History(StateDir(tmp_path / "state")).entries()
    assert (entry.action, entry.component, entry.success) == ("fleet_update", "core", False)
    assert entry.message == result.message
