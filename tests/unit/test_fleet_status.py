"""The pure parts of the fleet: batch plans, the rollout order, the inventory parser's
message, and the status view built from runner events (no hosts needed; the event
shapes and the parser output are those of real runs)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunebugger_updater import load_settings
from dunebugger_updater.device.core_procedure import Artifact, CoreProcedure, Prepared
from dunebugger_updater.device.events import RunnerEvent
from dunebugger_updater.errors import BadRequest
from dunebugger_updater.fleet.batches import Batches, Rollout, parse_batches, plan_batches
from dunebugger_updater.fleet.inventory import parser_message, rollout_order
from dunebugger_updater.fleet.status import (
    FleetResult,
    HostVersion,
    describe,
    device_statuses,
    fleet_result_message,
    host_versions,
    not_run,
    result_table,
)


def stats_event(counter: int, *, processed=(), dark=(), failures=(), artifact=None) -> RunnerEvent:
    return RunnerEvent(
        kind="playbook_on_stats",
        counter=counter,
        stats={
            "processed": dict.fromkeys(processed, 1),
            "dark": dict.fromkeys(dark, 1),
            "failures": dict.fromkeys(failures, 1),
            "changed": {},
            "artifact_data": artifact or {},
        },
    )


def report(outcome: str, reason: str = "", **more) -> dict:
    return {
        "component": "core",
        "from_version": "1.0.0",
        "to_version": "1.1.0",
        "outcome": outcome,
        "reason": reason,
        **more,
    }


@pytest.mark.parametrize(
    ("text", "expected"), [("1,25%,100%", (1, "25%", "100%")), ("100%", ("100%",)), ("2, 3", (2, 3))]
)
def test_batches_parse_like_serial(text, expected):
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["", "0", "1,0%", "101%", "a", "1;2", "-1", "1,,2"])
def test_bad_batches_are_bad_input(text):
    with pytest.raises(BadRequest, match="--batches"):
        parse_batches(text)


HOSTS16 = [f"h{index}" for index in range(1, 17)]


@pytest.mark.parametrize(
    ("canary", "batches", "expected"),
    [
        # Ansible's serial: a percentage of the run's devices (at least one), the last item repeated
        (set(), (1, "25%", "100%"), [1, 4, 11]),
        (set(), (2,), [2] * 8),
        (set(), ("10%",), [1] * 16),
        (set(), ("30%", 1), [4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        # a batch never mixes canary and other devices: it is split where the canary group ends
        ({"h1"}, (1, "25%", "100%"), [1, 4, 11]),
        ({"h1", "h2"}, (1, "25%", "100%"), [1, 1, 3, 11]),
        ({"h1", "h2", "h3"}, ("100%",), [3, 13]),
    ],
)
def test_batches_are_cut_like_serial_without_mixing_the_canary(canary, batches, expected):
    plan = plan_batches(HOSTS16, frozenset(canary), batches)
    assert [len(batch) for batch in plan.batches] == expected
    assert plan.hosts == tuple(HOSTS16)
    assert all(set(batch) <= canary or not set(batch) & canary for batch in plan.batches)


def test_the_plan_becomes_the_plays_host_list_and_serial():
    plan = plan_batches(["c1", "p1", "p2", "p3"], frozenset({"c1"}), (1, "100%"))
    assert plan.batches == (("c1",), ("p1", "p2", "p3"))
    assert (plan.batch_of("c1"), plan.batch_of("p3"), plan.batch_of("x")) == (1, 2, None)
    assert plan.extra_vars(Rollout((1, "100%"), 0)) == {
        "dunebugger_hosts": ["c1", "p1", "p2", "p3"],
        "dunebugger_batches": [1, 3],
        "dunebugger_max_fail_percentage": 0,
    }
    assert "dunebugger_max_fail_percentage" not in plan.extra_vars(Rollout(("100%",), None))


def test_rollout_order_is_canary_first_then_natural_name_order():
    hosts = {"offline", "p10", "p2", "p1", "c2", "c10"}
    assert rollout_order(hosts, frozenset({"c10", "c2"})) == ("c2", "c10", "offline", "p1", "p2", "p10")


# stderr of `ansible-inventory --list` with ANSIBLE_INVENTORY_UNPARSED_FAILED (ansible-core 2.19)
BROKEN_YAML = """\
[WARNING]: Failed to parse inventory with 'auto' plugin: YAML parsing failed: While parsing a flow node did not find expected node content.

Failed to parse inventory with 'auto' plugin.

<<< caused by >>>

YAML parsing failed: While parsing a flow node did not find expected node content.
Origin: /tmp/inv/broken.yml:6:1

[WARNING]: Failed to parse inventory with 'yaml' plugin: YAML parsing failed: While parsing a flow node did not find expected node content.
Origin: <inventory plugin 'yaml' with source '/tmp/inv/broken.yml'>

[WARNING]: Failed to parse inventory with 'ini' plugin: Failed to parse inventory: Invalid host pattern 'all:' supplied, ending in ':' is not allowed, this character is reserved to provide a port.
Origin: /tmp/inv/broken.yml

[WARNING]: Unable to parse /tmp/inv/broken.yml as an inventory source
[ERROR]: No inventory was parsed, please check your configuration and options.
"""


def test_the_parser_message_is_the_one_of_the_files_format():
    assert parser_message(BROKEN_YAML, Path("/tmp/inv/broken.yml")) == (
        "YAML parsing failed: While parsing a flow node did not find expected node content (line 6, column 1)"
    )
    assert parser_message(BROKEN_YAML, Path("/tmp/inv/broken.ini")).startswith(
        "Failed to parse inventory: Invalid host pattern 'all:'"
    )
    assert (
        parser_message(
            "[WARNING]: Unable to parse /x as an inventory source\n[ERROR]: No inventory was parsed", Path("/x")
        )
        == "Unable to parse /x as an inventory source"
    )


def test_only_release_values_are_passed_to_every_device(tmp_path):
    # Device settings must come from the inventory: extra-vars would override it.
    settings = load_settings(None, environ={"UPDATER_STATEPATH": str(tmp_path)})
    artifact = Artifact("dunebugger-1.1.0.tar.gz", "https://github.com/a/b", "0" * 64, "release asset digest")
    values = CoreProcedure(settings).release_vars(
        settings.component("core"), "1.1.0", Prepared(artifact, tmp_path / "a.tar.gz"), None
    )
    assert not {
        "core_install_path",
        "core_service_manager",
        "core_start_command",
        "core_health_url",
        "core_python",
        "core_from_version",
    } & set(values)
    assert values["dunebugger_version"] == "1.1.0" and values["core_archive_sha256"] == "0" * 64


def test_statuses_from_a_canary_that_was_rolled_back():
    events = [
        RunnerEvent("playbook_on_play_start", 1),
        RunnerEvent("runner_on_failed", 2, host="h1", message="Status code was 500 and not [200]"),
        stats_event(
            3,
            processed=["h1"],
            failures=["h1"],
            artifact={
                "dunebugger_update_by_host": {
                    "h1": report(
                        "rolled_back", "Status code was 500 and not [200]\nmore", failed_task="Wait for health"
                    )
                }
            },
        ),
    ]
    before = {name: HostVersion(name, "1.0.0") for name in ("h1", "h2")}

    statuses = device_statuses(events, before, Batches((("h1",), ("h2",))))

    h1, h2 = statuses["h1"], statuses["h2"]
    assert (h1.outcome, h1.batch, h1.version_before, h1.version_after, h1.rolled_back) == (
        "rolled_back",
        1,
        "1.0.0",
        "1.0.0",
        True,
    )
    assert (h1.reason, h1.failed_task) == ("Status code was 500 and not [200]", "Wait for health")
    assert (h2.outcome, h2.batch, h2.version_after) == ("not_started", 2, "1.0.0")
    assert "stopped" in describe("core", "update", "1.1.0", list(statuses.values()))


def test_statuses_of_updated_unreachable_and_failed_devices():
    ssh = "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.3 port 22: Connection refused"
    events = [
        RunnerEvent("playbook_on_play_start", 1),
        RunnerEvent("runner_on_ok", 2, host="h1"),
        RunnerEvent("playbook_on_play_start", 3),
        RunnerEvent("runner_on_ok", 4, host="h2"),
        RunnerEvent("runner_on_unreachable", 5, host="h3", message=ssh + "\r\n"),
        RunnerEvent("runner_on_failed", 6, host="h4"),
        stats_event(
            7,
            processed=["h1", "h2", "h4"],
            dark=["h3"],
            failures=["h4"],
            artifact={
                "dunebugger_update_by_host": {
                    "h1": report("updated"),
                    "h2": report("updated"),
                    "h4": report("failed", "sha256 mismatch"),
                }
            },
        ),
    ]
    before = {name: HostVersion(name, "1.0.0") for name in ("h1", "h2", "h3", "h4")}

    statuses = device_statuses(events, before, Batches((("h1",), ("h2", "h3", "h4"))))

    assert {h: (s.outcome, s.batch, s.version_after, s.reason) for h, s in statuses.items()} == {
        "h1": ("updated", 1, "1.1.0", ""),
        "h2": ("updated", 2, "1.1.0", ""),
        "h3": ("unreachable", 2, None, ssh),
        "h4": ("failed", 2, None, "sha256 mismatch"),
    }
    assert statuses["h3"].unreachable and not statuses["h3"].ok


def test_statuses_of_a_fleet_rollback():
    events = [
        stats_event(
            1,
            processed=["h1", "h2"],
            artifact={
                "dunebugger_update_by_host": {
                    "h1": report("rolled_back", from_version="1.1.0", to_version="1.0.0"),
                    "h2": report("rolled_back", from_version="1.0.0", to_version="1.0.0"),
                }
            },
        )
    ]
    before = {"h1": HostVersion("h1", "1.1.0"), "h2": HostVersion("h2", "1.0.0")}

    statuses = device_statuses(events, before, Batches((("h1", "h2"),)), action="rollback")

    assert {h: (s.outcome, s.version_before, s.version_after) for h, s in statuses.items()} == {
        "h1": ("rolled_back", "1.1.0", "1.0.0"),
        "h2": ("up_to_date", "1.0.0", "1.0.0"),
    }


def test_versions_pass_results():
    ssh = "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: No route to host"
    events = [
        RunnerEvent("runner_on_unreachable", 1, host="h10", message=ssh),
        stats_event(
            2,
            processed=["h1", "h2"],
            dark=["h10"],
            artifact={
                "dunebugger_versions_by_host": {
                    "h1": {
                        "versions": {
                            "core": {"version": "1.0.0", "error": ""},
                            "remote": {"version": "1.2.0", "error": ""},
                        },
                        "error": "",
                    },
                    "h2": {"versions": {"core": {"version": None, "error": ""}}, "error": ""},
                }
            },
        ),
    ]
    found = host_versions(events, "core", ["h1", "h2", "h10", "h3"])
    assert list(found) == ["h1", "h2", "h10", "h3"]
    assert (found["h1"].version, found["h1"].remote, found["h2"].version) == ("1.0.0", "1.2.0", None)
    assert found["h10"].unreachable and found["h10"].error == ssh
    assert found["h3"].error == "the versions playbook reported nothing for this device"


def test_devices_on_or_past_the_target_are_not_run():
    assert not_run(HostVersion("a", "1.0.0"), "1.1.0") is None
    assert not_run(HostVersion("a", None), "1.1.0") is None
    assert not_run(HostVersion("a", "1.1.0"), "1.1.0").outcome == "up_to_date"
    assert not_run(HostVersion("a", "1.2.0"), "1.1.0").outcome == "skipped"
    assert not_run(HostVersion("a", "1.2.0", unreachable=True), "1.1.0") is None


def test_fleet_result_message_shape():
    events = [
        RunnerEvent("playbook_on_play_start", 1),
        RunnerEvent("runner_on_ok", 2, host="h1"),
        stats_event(3, processed=["h1"], artifact={"dunebugger_update_by_host": {"h1": report("updated")}}),
    ]
    plan = Batches((("h1",),))
    devices = tuple(device_statuses(events, {"h1": HostVersion("h1", "1.0.0")}, plan).values())
    result = FleetResult("core", True, "ok", "1.1.0", "v1.1.0", (1, "100%"), 0, devices, "run-1", plan=plan)

    message = fleet_result_message(result)

    assert message["subject"] == "fleet_result" and message["source"] == "controller"
    body = message["body"]
    assert (body["action"], body["dry_run"]) == ("update", False)
    assert body["rollout"] == {"batches": [1, "100%"], "max_fail_percentage": 0, "plan": [["h1"]], "stopped": False}
    assert body["summary"] == {"updated": 1}
    assert body["devices"]["h1"] == {
        "batch": 1,
        "version_before": "1.0.0",
        "version_after": "1.1.0",
        "outcome": "updated",
        "rolled_back": False,
        "unreachable": False,
        "reason": "",
        "failed_task": "",
    }
    assert result_table(result).splitlines()[0].split() == [
        "DEVICE",
        "BATCH",
        "BEFORE",
        "AFTER",
        "RESULT",
        "ROLLED",
        "BACK",
        "UNREACHABLE",
        "REASON",
    ]
