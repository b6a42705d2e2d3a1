"""The pure parts of the fleet: batch specs and the status view built from runner events
(no hosts needed; the event shapes are those of a real run over the test bed)."""

from __future__ import annotations

import pytest

from dunebugger_updater import load_settings
from dunebugger_updater.device.core_procedure import Artifact, CoreProcedure, Prepared
from dunebugger_updater.device.events import RunnerEvent
from dunebugger_updater.errors import BadRequest
from dunebugger_updater.fleet.rollout import Rollout, parse_batches
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
    return RunnerEvent(kind="playbook_on_stats", counter=counter, stats={
        "processed": dict.fromkeys(processed, 1), "dark": dict.fromkeys(dark, 1),
        "failures": dict.fromkeys(failures, 1), "changed": {}, "artifact_data": artifact or {}})


def report(outcome: str, reason: str = "") -> dict:
    return {"component": "core", "from_version": "1.0.0", "to_version": "1.1.0", "outcome": outcome, "reason": reason}


@pytest.mark.parametrize(("text", "expected"), [
    ("1,25%,100%", (1, "25%", "100%")), ("100%", ("100%",)), ("2, 3", (2, 3))])
def test_batches_parse_like_serial(text, expected):
    assert parse_batches(text) == expected


@pytest.mark.parametrize("text", ["", "0", "1,0%", "101%", "a", "1;2", "-1", "1,,2"])
def test_bad_batches_are_bad_input(text):
    with pytest.raises(BadRequest, match="--batches"):
        parse_batches(text)


def test_rollout_becomes_the_playbook_variables():
    assert Rollout((1, "100%"), 0).extra_vars() == {"dunebugger_batches": [1, "100%"], "dunebugger_max_fail_percentage": 0}
    assert Rollout(("100%",), None).extra_vars() == {"dunebugger_batches": ["100%"]}


def test_only_release_values_are_passed_to_every_device(tmp_path):
    # Device settings must come from the inventory: extra-vars would override it.
    settings = load_settings(None, environ={"UPDATER_STATEPATH": str(tmp_path)})
    artifact = Artifact("dunebugger-1.1.0.tar.gz", "https://github.com/a/b", "0" * 64, "release asset digest")
    values = CoreProcedure(settings).release_vars(
        settings.component("core"), "1.1.0", Prepared(artifact, tmp_path / "a.tar.gz"), None)
    assert not {"core_install_path", "core_service_manager", "core_start_command", "core_health_url",
                "core_python", "core_from_version"} & set(values)
    assert values["dunebugger_version"] == "1.1.0" and values["core_archive_sha256"] == "0" * 64


def test_statuses_from_a_canary_that_was_rolled_back():
    events = [
        RunnerEvent("playbook_on_play_start", 1),
        RunnerEvent("runner_on_ok", 2, host="h1"),
        stats_event(3, processed=["h1"], failures=["h1"],
                    artifact={"dunebugger_update_by_host": {"h1": report("rolled_back", "Status code was 500")}}),
    ]
    before = {name: HostVersion(name, "1.0.0") for name in ("h1", "h2")}

    statuses = device_statuses(events, before, ["h1", "h2"], "1.1.0")

    h1, h2 = statuses["h1"], statuses["h2"]
    assert (h1.outcome, h1.batch, h1.version_before, h1.version_after, h1.rolled_back) == (
        "rolled_back", 1, "1.0.0", "1.0.0", True)
    assert (h2.outcome, h2.batch, h2.version_after) == ("not_started", None, "1.0.0")
    assert "stopped" in describe("core", "1.1.0", list(statuses.values()))


def test_statuses_of_updated_unreachable_and_failed_devices():
    events = [
        RunnerEvent("playbook_on_play_start", 1), RunnerEvent("runner_on_ok", 2, host="h1"),
        RunnerEvent("playbook_on_play_start", 3), RunnerEvent("runner_on_ok", 4, host="h2"),
        RunnerEvent("runner_on_unreachable", 5, host="h3"), RunnerEvent("runner_on_failed", 6, host="h4"),
        stats_event(7, processed=["h1", "h2", "h4"], dark=["h3"], failures=["h4"], artifact={
            "dunebugger_update_by_host": {"h1": report("updated"), "h2": report("updated"),
                                          "h4": report("failed", "sha256 mismatch")}}),
    ]
    before = {name: HostVersion(name, "1.0.0") for name in ("h1", "h2", "h4")} | {"h3": HostVersion("h3", None, True)}

    statuses = device_statuses(events, before, ["h1", "h2", "h3", "h4"], "1.1.0")

    assert {h: (s.outcome, s.batch, s.version_after) for h, s in statuses.items()} == {
        "h1": ("updated", 1, "1.1.0"), "h2": ("updated", 2, "1.1.0"),
        "h3": ("unreachable", 2, None), "h4": ("failed", 2, None)}
    assert statuses["h3"].unreachable and not statuses["h3"].ok


def test_versions_pass_results():
    events = [stats_event(1, processed=["h1", "h2"], dark=["h10"], artifact={"dunebugger_versions_by_host": {
        "h1": {"version": "1.0.0", "error": ""}, "h2": {"version": None, "error": ""}}})]
    found = host_versions(events)
    assert list(found) == ["h1", "h2", "h10"]
    assert (found["h1"].version, found["h2"].version, found["h10"].unreachable) == ("1.0.0", None, True)


def test_devices_on_or_past_the_target_are_not_run():
    assert not_run(HostVersion("a", "1.0.0"), "1.1.0") is None
    assert not_run(HostVersion("a", None), "1.1.0") is None
    assert not_run(HostVersion("a", "1.1.0"), "1.1.0").outcome == "up_to_date"
    assert not_run(HostVersion("a", "1.2.0"), "1.1.0").outcome == "skipped"
    assert not_run(HostVersion("a", "1.2.0", unreachable=True), "1.1.0") is None


def test_fleet_result_message_shape():
    events = [RunnerEvent("playbook_on_play_start", 1), RunnerEvent("runner_on_ok", 2, host="h1"),
              stats_event(3, processed=["h1"], artifact={"dunebugger_update_by_host": {"h1": report("updated")}})]
    devices = tuple(device_statuses(events, {"h1": HostVersion("h1", "1.0.0")}, ["h1"], "1.1.0").values())
    result = FleetResult("core", True, "ok", "1.1.0", "v1.1.0", (1, "100%"), 0, devices, "run-1")

    message = fleet_result_message(result)

    assert message["subject"] == "fleet_result" and message["source"] == "controller"
    body = message["body"]
    assert body["rollout"] == {"batches": [1, "100%"], "max_fail_percentage": 0, "stopped": False}
    assert body["summary"] == {"updated": 1}
    assert body["devices"]["h1"] == {"batch": 1, "version_before": "1.0.0", "version_after": "1.1.0",
                                     "outcome": "updated", "rolled_back": False, "unreachable": False, "reason": ""}
    assert result_table(result).splitlines()[0].split() == [
        "DEVICE", "BATCH", "BEFORE", "AFTER", "RESULT", "ROLLED", "BACK", "UNREACHABLE", "REASON"]
