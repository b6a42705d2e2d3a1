"""`fleet rollback` over SSH hosts, and one rollout or rollback at a time per inventory."""

from __future__ import annotations

import time

from support.fleet_testbed import wait_for


def outcomes(message: dict) -> dict[str, tuple]:
    assert message["subject"] == "fleet_result"
    return {
        host: (device["outcome"], device["version_before"], device["version_after"])
        for host, device in message["body"]["devices"].items()
    }


def test_a_second_rollout_over_the_same_inventory_is_busy_and_rollback_restores_each_device(fleet, controller):
    controller.publish("1.1.0")
    inventory = str(fleet.inventory)
    running = controller.start("fleet", "update", "core", "-i", inventory, "--limit", "h1,h2", "--json")
    wait_for(
        lambda: any("fleet update of core" in path.read_text() for path in controller.state.glob("fleet-*.lock")),
        "the first rollout to hold the inventory",
        timeout=60,
    )

    began = time.monotonic()
    busy_update = controller.cli("fleet", "update", "core", "-i", inventory, "--limit", "h3")
    busy_rollback = controller.cli("fleet", "rollback", "core", "-i", inventory)
    quick = time.monotonic() - began
    _out, err = running.communicate(timeout=300)

    assert running.returncode == 0, err
    for done in (busy_update, busy_rollback):
        assert done.returncode == 1 and done.stdout.startswith("busy: fleet update of core"), done.stdout
        assert f"over inventory {fleet.inventory}" in done.stdout and "try again" in done.stdout
    assert quick < 30, "a busy inventory is answered at once, not after a download or a versions pass"
    assert [host.health() for host in fleet.hosts] == ["1.1.0", "1.1.0", "1.0.0", "1.0.0"]

    status, message = controller.fleet_json("rollback", "core", "-i", inventory, "--limit", "h1")
    assert status == 0, message
    assert outcomes(message) == {"h1": ("rolled_back", "1.1.0", "1.0.0")}
    assert [host.health() for host in fleet.hosts] == ["1.0.0", "1.1.0", "1.0.0", "1.0.0"]

    status, message = controller.fleet_json("rollback", "core", "-i", inventory, "--limit", "h2,h3", "--to", "1.0.0")
    assert status == 0, message
    assert (message["body"]["action"], message["body"]["version"]) == ("rollback", "1.0.0")
    assert outcomes(message) == {"h2": ("rolled_back", "1.1.0", "1.0.0"), "h3": ("up_to_date", "1.0.0", "1.0.0")}
    assert [host.health() for host in fleet.hosts] == ["1.0.0"] * 4
    assert fleet["h3"].pristine(), "a device already on the target is left as it is"
