"""The fleet tier: four real hosts (network namespaces on a bridge of our own, each with
its own sshd, hostname and /opt) reached by Ansible over SSH; see fleet_testbed.py.

The hosts are built once per session (about 2 s) and every test starts from the same
state: every host reachable, running a fresh plain-directory core 1.0.0 under
/opt/dunebugger with the `command` service manager. Without root, iproute2 or sshd the
tests FAIL naming what is missing: a fleet test that silently skips hides a broken CI
machine. Every test here is marked `fleet` (deselect with `-m "not fleet"`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

from fleet_testbed import Fleet, free_octet

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


@dataclass
class Controller:
    """The machine that runs `dunebugger-updater fleet ...`: a config pointing at the
    loopback GitHub, its own state directory, and the CLI as a subprocess."""

    github: FakeGitHub
    config: Path
    artifacts: Path

    def publish(self, version: str, *, health: str = "ok") -> Path:
        archive = releases.build_release(self.artifacts, version, health=health)
        self.github.add_release(CORE_REPO, f"v{version}", assets={f"dunebugger-{version}.tar.gz": archive.read_bytes()})
        return archive

    def cli(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items()
                   if not k.startswith("UPDATER_") and k not in ("GITHUB_TOKEN", "DUNEBUGGER_CONFIG")}
        return subprocess.run([sys.executable, "-m", "dunebugger_updater.cli", "--config", str(self.config), *args],
                              capture_output=True, text=True, timeout=timeout, env=environ, check=False)

    def fleet_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = self.cli("fleet", *args, "--json")
        try:
            return done.returncode, json.loads(done.stdout)
        except ValueError:
            raise AssertionError(f"no JSON on stdout (exit {done.returncode}):\n{done.stdout}\n{done.stderr}") from None


@pytest.fixture
def controller(tmp_path: Path, github: FakeGitHub) -> Controller:
    config = tmp_path / "controller.conf"
    config.write_text(f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {tmp_path / 'state'}\n")
    return Controller(github, config, tmp_path / "artifacts")
