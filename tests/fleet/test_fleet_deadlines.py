"""Waits and deadlines over SSH: a health wait lasts its timeout whatever one try costs,
and a fleet run stopped at its deadline leaves no device between two releases."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

# Accepts connections and never answers: every request of a health check hangs until
# its own timeout.
SILENT_LISTENER = """
import socket, sys, time
listener = socket.socket()
listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
listener.bind(("127.0.0.1", int(sys.argv[1])))
listener.listen(64)
time.sleep(3600)
"""


def manifest_with_health(url: str, timeout: int) -> bytes:
    return (
        f'version: "1.1.0"\ncomponent_type: "python_app"\npost_update_checks:\n'
        f'  - type: "health_endpoint"\n    url: "{url}"\n    timeout_seconds: {timeout}\n'
    ).encode()


def failed_task_durations(controller, message: dict, host: str, task: str) -> list[float]:
    """Seconds each failed run of `task` took on `host`, from the run's event artifacts."""
    run_id = message["body"]["run_id"]
    directory = controller.state / "fleet-runs" / run_id / "artifacts" / run_id / "job_events"
    durations = []
    for path in directory.glob("*.json"):
        event = json.loads(path.read_text())
        data = event["event_data"]
        if event["event"] == "runner_on_failed" and data.get("host") == host and data.get("task") == task:
            durations.append(
                (datetime.fromisoformat(data["end"]) - datetime.fromisoformat(data["start"])).total_seconds()
            )
    return durations


@pytest.fixture
def silent_port(fleet):
    port = 18999
    listener = subprocess.Popen(
        [
            "nsenter",
            "-t",
            str(fleet["h1"].anchor_pid),
            "-m",
            "-u",
            "-n",
            "--",
            sys.executable,
            "-c",
            SILENT_LISTENER,
            str(port),
        ]
    )
    yield port
    listener.kill()
    listener.wait()


def test_a_10_s_health_timeout_over_ssh_takes_10_s(fleet, controller, silent_port):
    """Each try of this endpoint hangs for its own request timeout, and every task costs
    SSH round trips: the wait still ends 10 s after it began (it used to take 41 s)."""
    controller.publish("1.1.0", manifest=manifest_with_health(f"http://127.0.0.1:{silent_port}/health", 10))

    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory), "--limit", "h1")

    assert status == 1
    device = message["body"]["devices"]["h1"]
    assert (device["outcome"], device["version_after"]) == ("rolled_back", "1.0.0")
    assert "did not answer 200 within 10s" in device["reason"]
    # one module execution verifies the release: the service (active at once, then 0.5 s
    # to settle) and the health wait
    (waited,) = failed_task_durations(controller, message, "h1", "Verify the running release")
    assert 10 <= waited <= 14, f"the verification with a 10 s health timeout took {waited:.1f} s"
    assert fleet["h1"].health() == "1.0.0"


def test_a_run_stopped_at_its_deadline_rolls_the_device_back(fleet, controller, tmp_path):
    """The migration hangs after the switch; the run is stopped at its deadline and the
    rollback playbook brings 1.0.0 back (36 s: the service's start wait must fit)."""
    hang = b'#!/bin/sh\necho $$ > "$DUNEBUGGER_RELEASE_DIR/migrate.pid"\nexec sleep 600\n'
    controller.publish("1.1.0", extra_members={"scripts/migrate.sh": (hang, 0o755)})
    controller.config.write_text(controller.config.read_text() + "playbookTimeoutMinutes = 0.6\n")

    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory), "--limit", "h1")

    assert status == 1
    devices = message["body"]["devices"]
    assert (devices["h1"]["outcome"], devices["h1"]["version_after"]) == ("rolled_back", "1.0.0"), devices["h1"]
    assert "stopped at its deadline" in devices["h1"]["reason"]
    assert fleet["h1"].health() == "1.0.0" and fleet["h1"].installed_version() == "1.0.0"
