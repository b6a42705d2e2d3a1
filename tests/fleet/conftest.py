"""The fleet tier: four real hosts (network namespaces on a bridge of our own, each with
its own sshd, hostname and /opt) reached by Ansible over SSH; the hosts are built by
tests/support/fleet_testbed.py (and container_testbed.py, with an engine each).

The hosts are built once per session (about 2 s) and every test starts from the same
state: every host reachable, running a fresh plain-directory core 1.0.0 under
/opt/dunebugger with the `command` service manager. Without root, iproute2 or sshd the
tests FAIL naming what is missing: a fleet test that silently skips hides a broken CI
machine. Every test here is marked `fleet` (deselect with `-m "not fleet"`); fleet
tests that need no hosts live in tests/unit (test_fleet_*.py).
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases
from support.cli import run_cli, run_cli_json, start_cli
from support.container_testbed import ContainerFleet, ci_environment
from support.fleet_testbed import Fleet, free_octet

HERE = Path(__file__).parent
CORE_REPO = "marco-svitol/dunebugger"


def pytest_configure(config):
    config.addinivalue_line("markers", "fleet: needs root, network namespaces and sshd (several SSH hosts)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.fleet)


@pytest.fixture(scope="session")
def fleet_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with Fleet(tmp_path_factory.mktemp("fleet"), count=4, octet=free_octet(7)) as hosts:
        yield hosts


@pytest.fixture
def fleet(fleet_hosts: Fleet) -> Fleet:
    fleet_hosts.reset()
    return fleet_hosts


@pytest.fixture(scope="session")
def container_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ContainerFleet]:
    """Three hosts with a container engine each (support/container_testbed.py), built once."""
    with ContainerFleet(
        tmp_path_factory.mktemp("containers"),
        count=3,
        octet=free_octet(17),
        tag=f"c{os.getpid() % 100000}",
        ci_env=ci_environment(),
    ) as hosts:
        yield hosts


@pytest.fixture
def container_fleet(container_hosts: ContainerFleet) -> ContainerFleet:
    container_hosts.reset()
    return container_hosts


@dataclass
class Controller:
    """The machine that runs `dunebugger-updater fleet ...`: a config pointing at the
    loopback GitHub, its own state directory, and the CLI as a subprocess."""

    github: FakeGitHub
    config: Path
    artifacts: Path
    state: Path

    def publish(
        self,
        version: str,
        *,
        health: str = "ok",
        manifest: bytes | None = None,
        extra_members: dict[str, tuple[bytes, int]] | None = None,
    ) -> Path:
        archive = releases.build_release(self.artifacts, version, health=health, extra_members=extra_members)
        self.github.add_release(
            CORE_REPO, f"v{version}", assets={f"dunebugger-{version}.tar.gz": archive.read_bytes()}, manifest=manifest
        )
        return archive

    def publish_service(self, component: str, version: str, *, manifest: bytes | None = None) -> None:
        self.github.add_release(f"marco-svitol/dunebugger-{component}", f"v{version}", manifest=manifest)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The CLI with this controller's config, run to its end."""
        return run_cli(*args, config=self.config)

    def start(self, *args: str) -> subprocess.Popen[str]:
        """The CLI in the background; read its output with communicate()."""
        return start_cli(*args, config=self.config)

    def played_batches(self, message: dict[str, Any]) -> list[list[str]]:
        """The hosts of every play (one per batch) of the run a fleet_result names, in
        the order Ansible started them: from the run's own event artifacts."""
        run_id = message["body"]["run_id"]
        directory = self.state / "fleet-runs" / run_id / "artifacts" / run_id / "job_events"
        events = sorted((json.loads(path.read_text()) for path in directory.glob("*.json")), key=lambda e: e["counter"])
        batches: list[list[str]] = []
        for event in events:
            if event["event"] == "playbook_on_play_start":
                batches.append([])
            elif event["event"] == "runner_on_start" and event["event_data"]["host"] not in batches[-1]:
                batches[-1].append(event["event_data"]["host"])
        return batches

    def fleet_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        """`fleet ARGS --json`: the exit status and the message."""
        return run_cli_json("fleet", *args, config=self.config)


@pytest.fixture
def controller(tmp_path: Path, github: FakeGitHub) -> Controller:
    config = tmp_path / "controller.conf"
    # DUNEBUGGER_FLEET_STRATEGY=mitogen_linear runs the whole tier with the opt-in strategy.
    strategy = os.environ.get("DUNEBUGGER_FLEET_STRATEGY", "linear")
    config.write_text(
        f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {tmp_path / 'state'}\nfleetStrategy = {strategy}\n"
    )
    return Controller(github, config, tmp_path / "artifacts", tmp_path / "state")


@pytest.fixture
def container_controller(controller: Controller, container_hosts: ContainerFleet) -> Controller:
    """The controller, with the container components' images in the fleet's registry."""
    sections = "".join(
        f"\n[Component:{name}]\nimage = {container_hosts.registry}/dunebugger-{name}\n"
        for name in ("scheduler", "remote")
    )
    controller.config.write_text(controller.config.read_text() + sections)
    return controller
