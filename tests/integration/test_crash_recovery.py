"""Crash safety: kill the updater (and every process it started) at each step of an
update, as a power cut would, then start it again. The device must end on the old or
the new version, running and healthy, never in between."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.demo.sandbox import releases
from support.cli import start_cli

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

# Task boundaries: killed as the task starts.
KILL_POINTS = [
    "Check free disk space for the new release",
    "Extract the release safely and create its virtualenv",
    "Back up, stop, switch to the new release, migrate and start",  # while it backs up
    "Verify the running release",  # the prune of old releases is in it
    "Say what the update kept and pruned",
]
# Inside the one module execution of the switch: after the stop, during the migration
# (the link already moved), after the start command returned.
SWITCH_POINTS = ["stopped", "migrating", "started"]


def pause_at(device: DemoDevice, point: str) -> str:
    """Shell text that, once, marks `point` as reached and then hangs there."""
    flag, reached = device.home / f"pause-{point}", device.home / f"reached-{point}"
    return f'if [ -e {flag} ]; then rm {flag}; touch {reached}; exec sleep 600; fi'


def with_switch_pauses(device: DemoDevice) -> bytes:
    """Point the service commands at wrappers that can hang after doing their work; returns
    a migration script that can hang too."""
    appctl = f"{sys.executable} -m dunebugger_updater.demo.sandbox.appctl --home {device.home}"
    lines = []
    for line in device.config.read_text().splitlines():
        if line.startswith("stopCommand"):
            line = f"stopCommand = /bin/sh -c '{appctl} stop && {pause_at(device, 'stopped')}'"
        elif line.startswith("startCommand"):
            line = f"startCommand = /bin/sh -c '{appctl} start && {pause_at(device, 'started')}'"
        lines.append(line)
    device.config.write_text("\n".join(lines) + "\n")
    return f"#!/bin/sh\n{pause_at(device, 'migrating')}\nexit 0\n".encode()


def with_stage_pause(device: DemoDevice) -> None:
    """Create release venvs through an interpreter that can hang once it is asked to, after
    the extraction, inside the one module execution of the stage."""
    python = device.home / "python-that-pauses"
    python.write_text(f'#!/bin/sh\ncase "$*" in *"-m venv"*) {pause_at(device, "venv")};; esac\n'
                      f'exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    lines = [f"python = {python}" if line.startswith("python =") else line
             for line in device.config.read_text().splitlines()]
    device.config.write_text("\n".join(lines) + "\n")


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        for child in children.get(pid, []):
            found.append(child)
            queue.append(child)
    return found


def power_cut(pid: int) -> None:
    for victim in [pid, *descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def task_started(state: Path, task: str) -> bool:
    for event_file in state.glob("runs/*/artifacts/*/job_events/*.json"):
        try:
            event = json.loads(event_file.read_text())
        except (OSError, ValueError):
            continue  # being written
        if event.get("event") == "playbook_on_task_start" and event.get("event_data", {}).get("task") == task:
            return True
    return False


def cut_power_when(updater: subprocess.Popen[str], reached, what: str) -> None:
    deadline = time.monotonic() + 120
    while not reached():
        assert updater.poll() is None, f"the update ended before {what}: {updater.communicate()}"
        assert time.monotonic() < deadline, f"{what} was never reached"
        time.sleep(0.02)
    power_cut(updater.pid)
    updater.wait(timeout=30)


def assert_recovers(device: DemoDevice) -> None:
    assert (device.state / "journal.json").exists(), "the cut-off run left no journal"
    recovered = start_cli("recover", "--json", config=device.config)
    out, err = recovered.communicate(timeout=180)
    assert recovered.returncode == 0, (out, err)
    result = json.loads(out)["body"]
    assert result["success"] is True, result

    health = device.wait_healthy(timeout=10)
    assert health["version"] in ("1.0.0", "1.1.0")
    assert not (device.state / "journal.json").exists()
    core = device.home / "core"
    assert (core / "VERSION").is_file() and (core / "app.py").is_file()
    history = [json.loads(line) for line in (device.state / "history.jsonl").read_text().splitlines()]
    assert history[-1]["action"] == "recovery" and history[-1]["success"] is True


@pytest.mark.parametrize("kill_at", KILL_POINTS)
def test_killed_update_ends_on_old_or_new_version_after_restart(device, kill_at):
    migrate = (b"#!/bin/sh\nexit 0\n", 0o755)
    archive = releases.build_release(device.artifacts, "1.1.0", extra_members={"scripts/migrate.sh": migrate})
    device.publish_archive("1.1.0", archive)

    updater = start_cli("update", "core", "--json", config=device.config)
    cut_power_when(updater, lambda: task_started(device.state, kill_at), f"'{kill_at}'")
    assert_recovers(device)


@pytest.mark.parametrize("point", SWITCH_POINTS)
def test_killed_inside_the_switch_ends_on_old_or_new_version_after_restart(device, point):
    migrate = with_switch_pauses(device)
    archive = releases.build_release(device.artifacts, "1.1.0", extra_members={"scripts/migrate.sh": (migrate, 0o755)})
    device.publish_archive("1.1.0", archive)
    (device.home / f"pause-{point}").touch()

    updater = start_cli("update", "core", "--json", config=device.config)
    cut_power_when(updater, (device.home / f"reached-{point}").exists, f"the switch's '{point}'")
    assert_recovers(device)

    if point != "migrating":
        return  # one full retry proves the device is usable again; the rest cost time only
    retry = start_cli("update", "core", "--json", config=device.config)
    out, err = retry.communicate(timeout=180)
    assert retry.returncode == 0, (out, err)
    assert device.wait_healthy()["version"] == "1.1.0"


def test_killed_inside_the_stage_ends_on_the_old_version_and_the_next_update_works(device):
    """Killed while the venv is created: the release is extracted, the service untouched."""
    with_stage_pause(device)
    archive = releases.build_release(device.artifacts, "1.1.0")
    device.publish_archive("1.1.0", archive)
    (device.home / "pause-venv").touch()

    updater = start_cli("update", "core", "--json", config=device.config)
    cut_power_when(updater, (device.home / "reached-venv").exists, "the stage's venv")
    assert (device.home / "releases" / "core" / "1.1.0" / "VERSION").is_file(), "killed before the extraction ended"
    assert_recovers(device)
    assert device.wait_healthy()["version"] == "1.0.0"

    retry = start_cli("update", "core", "--json", config=device.config)
    out, err = retry.communicate(timeout=180)
    assert retry.returncode == 0, (out, err)
    assert device.wait_healthy()["version"] == "1.1.0"
