"""Container components over a fleet: hosts with an engine of their own each, reached
over SSH, updated by the vetted container playbooks (tests/support/container_testbed.py)."""

from __future__ import annotations

SCHEDULER_MANIFEST = """version: "{version}"
component_type: "container"
min_remote_version: "{remote}"
"""


def outcomes(message: dict) -> dict[str, tuple]:
    assert message["subject"] == "fleet_result", message
    return {
        host: (device["batch"], device["outcome"], device["version_before"], device["version_after"])
        for host, device in message["body"]["devices"].items()
    }


def test_scheduler_rolled_out_canary_first_pulled_once_per_device_then_rolled_back(
    container_fleet, container_controller
):
    fleet, controller = container_fleet, container_controller
    controller.publish_service("scheduler", "1.1.0")
    remote_ids = {host.name: fleet.container_ids(host)["remote"] for host in fleet.hosts}
    mark = fleet.registry_mark()

    status, message = controller.fleet_json("update", "scheduler", "-i", str(fleet.inventory))

    assert status == 0, message
    assert outcomes(message) == {
        "h1": (1, "updated", "1.0.0", "1.1.0"),
        "h2": (2, "updated", "1.0.0", "1.1.0"),
        "h3": (2, "updated", "1.0.0", "1.1.0"),
    }
    assert controller.played_batches(message) == [["h1"], ["h2", "h3"]]
    assert [fleet.running(host) for host in fleet.hosts] == [{"scheduler": "1.1.0", "remote": "1.0.0"}] * 3
    assert fleet.manifest_fetches("dunebugger-scheduler:1.1.0", mark) == {"h1": 1, "h2": 1, "h3": 1}, "one pull each"
    assert {host.name: fleet.container_ids(host)["remote"] for host in fleet.hosts} == remote_ids
    paths = [request.path for request in controller.github.requests]
    assert sum(path.endswith("/releases/latest") for path in paths) == 1, "resolved once, on the controller"

    status, message = controller.fleet_json("rollback", "scheduler", "-i", str(fleet.inventory))

    assert status == 0, message
    assert outcomes(message) == dict.fromkeys(("h1", "h2", "h3"), (1, "rolled_back", "1.1.0", "1.0.0"))
    assert [fleet.running(host) for host in fleet.hosts] == [{"scheduler": "1.0.0", "remote": "1.0.0"}] * 3


def test_an_unhealthy_canary_is_rolled_back_and_no_other_device_is_touched(container_fleet, container_controller):
    fleet, controller = container_fleet, container_controller
    controller.publish_service("scheduler", "1.8.0")  # its image turns unhealthy
    ids = {host.name: fleet.container_ids(host) for host in fleet.hosts}
    mark = fleet.registry_mark()

    status, message = controller.fleet_json("update", "scheduler", "-i", str(fleet.inventory))

    assert status == 1
    assert outcomes(message) == {
        "h1": (1, "rolled_back", "1.0.0", "1.0.0"),
        "h2": (2, "not_started", "1.0.0", "1.0.0"),
        "h3": (2, "not_started", "1.0.0", "1.0.0"),
    }
    canary = message["body"]["devices"]["h1"]
    assert "unhealthy" in canary["reason"] and canary["failed_task"]
    assert fleet.running(fleet["h1"]) == {"scheduler": "1.0.0", "remote": "1.0.0"}
    assert fleet.manifest_fetches("dunebugger-scheduler:1.8.0", mark) == {"h1": 1, "h2": 0, "h3": 0}
    for name in ("h2", "h3"):
        assert fleet.container_ids(fleet[name]) == ids[name], f"{name} was touched"


def test_min_remote_version_holds_across_the_fleet(container_fleet, container_controller):
    """A scheduler release that needs remote 1.1.0 goes only where remote already runs
    it; once remote is rolled out, the same rollout would reach the others."""
    fleet, controller = container_fleet, container_controller
    fleet.set_stack(fleet["h2"], {"scheduler": "1.0.0", "remote": "1.1.0"})
    controller.publish_service(
        "scheduler", "1.1.0", manifest=SCHEDULER_MANIFEST.format(version="1.1.0", remote="1.1.0").encode()
    )
    controller.publish_service("remote", "1.1.0")
    inventory = str(fleet.inventory)

    status, message = controller.fleet_json("update", "scheduler", "-i", inventory)

    assert status == 1
    assert outcomes(message) == {
        "h1": (None, "refused", "1.0.0", "1.0.0"),
        "h2": (1, "updated", "1.0.0", "1.1.0"),
        "h3": (None, "refused", "1.0.0", "1.0.0"),
    }
    assert "needs remote 1.1.0 or newer (runs 1.0.0): update remote first" in message["body"]["devices"]["h1"]["reason"]
    assert fleet.running(fleet["h1"]) == {"scheduler": "1.0.0", "remote": "1.0.0"}

    status, message = controller.fleet_json("update", "remote", "-i", inventory)
    assert status == 0, message
    assert {h: d[1] for h, d in outcomes(message).items()} == {"h1": "updated", "h2": "up_to_date", "h3": "updated"}

    status, message = controller.fleet_json("update", "scheduler", "-i", inventory, "--dry-run")
    assert status == 0, message
    assert {h: d[1] for h, d in outcomes(message).items()} == {"h1": "planned", "h2": "up_to_date", "h3": "planned"}
