"""Compose stacks as operators bring them up: with `-p NAME`, a top-level `name:`, or
`COMPOSE_PROJECT_NAME`. An update and a rollback act on the project the service runs
in (read from its container's labels), never on a second copy in the project named
after the directory; and a rollback is verified with the restored tag's own checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.demo import free_port
from dunebugger_updater.demo.fake_github import FakeGitHub

COMPOSE = """\
# A device's stack; its project name does not come from the directory.
{name_line}services:
  scheduler:
    image: {registry}/dunebugger-scheduler:1.0.0
    init: true
    ports: ["127.0.0.1:{port}:8080"]
  remote:
    image: "{registry}/dunebugger-remote:1.0.0"
    init: true
"""

PROJECT = "dunebugger-stack"


@dataclass
class Stack:
    home: Path
    compose: Path
    config: Path
    port: int
    docker_env: object

    def settings(self):
        return load_settings(self.config, environ={})

    def containers(self, service: str) -> list[dict]:
        """Every container of `service` started from this stack's directory, any project."""
        ids = self.docker_env.docker("ps", "-aq", "--filter", f"label=com.docker.compose.service={service}",
                                     "--filter", f"label=com.docker.compose.project.working_dir={self.home}").split()
        return json.loads(self.docker_env.docker("inspect", *ids)) if ids else []

    def only_container(self, service: str) -> dict:
        found = self.containers(service)
        assert len(found) == 1, f"{service}: {len(found)} containers ({[c['Name'] for c in found]})"
        return found[0]


def project_of(container: dict) -> str:
    return container["Config"]["Labels"]["com.docker.compose.project"]


# how the operator named the stack -> (line in the compose file, extra `up` argv, environment)
NAMINGS = {
    "dash-p": ("", ["-p", PROJECT], {}),
    "name-key": (f"name: {PROJECT}\n", [], {}),
    "env-var": ("", [], {"COMPOSE_PROJECT_NAME": PROJECT}),
}


@pytest.fixture(params=sorted(NAMINGS))
def stack(request, tmp_path, docker_env, registry, github) -> Iterator[Stack]:
    name_line, up_args, up_env = NAMINGS[request.param]
    home = tmp_path / "device"
    home.mkdir()
    port = free_port()
    compose = home / "docker-compose.yml"
    compose.write_text(COMPOSE.format(name_line=name_line, registry=registry, port=port))
    config = home / "dunebugger.conf"
    config.write_text(
        "[Updater]\n"
        f"githubApiUrl = {github.url}\n"
        f"dockerComposePath = {compose}\n"
        f"backupPath = {home / 'backups'}\n"
        f"statePath = {home / 'state'}\n"
        f"coreInstallPath = {home / 'core'}\n"
        "[Component:scheduler]\n"
        f"image = {registry}/dunebugger-scheduler\n"
        f"healthUrl = http://127.0.0.1:{port}/health\n"
        "healthTimeoutSeconds = 20\n"
        "[Component:remote]\n"
        f"image = {registry}/dunebugger-remote\n"
    )
    # The updater's own environment has no COMPOSE_PROJECT_NAME: it must find the project.
    os.environ.update({k: v for k, v in docker_env.env.items() if k.startswith(("DOCKER", "DUNEBUGGER"))})
    os.environ.pop("COMPOSE_PROJECT_NAME", None)
    for image in ("dunebugger-scheduler:1.0.0", "dunebugger-scheduler:1.1.0", "dunebugger-remote:1.0.0"):
        docker_env.docker("pull", "-q", f"{registry}/{image}")
    compose_argv = ["docker", "compose", *up_args, "-f", str(compose)]
    docker_env.run(*compose_argv, "up", "-d", timeout=120, env=up_env)
    yield Stack(home, compose, config, port, docker_env)
    docker_env.run(*compose_argv, "down", "-t", "1", check=False, timeout=120, env=up_env)
    docker_env.run("docker", "compose", "-f", str(compose), "down", "-t", "1", check=False, timeout=120)


def publish(github: FakeGitHub, version: str, manifest: bytes | None = None) -> None:
    github.add_release("marco-svitol/dunebugger-scheduler", f"v{version}", body=f"scheduler {version}",
                       manifest=manifest)


async def test_update_and_rollback_act_on_the_running_project(stack, github):
    publish(github, "1.1.0")
    before_text = stack.compose.read_text()
    remote_id = stack.only_container("remote")["Id"]
    updater = ComponentUpdater(stack.settings())

    updated = await updater.update_component("scheduler")

    assert (updated.success, updated.outcome) == (True, "updated"), updated.message
    scheduler = stack.only_container("scheduler")
    assert project_of(scheduler) == PROJECT and scheduler["State"]["Running"]
    assert scheduler["Config"]["Image"].endswith("dunebugger-scheduler:1.1.0")
    assert stack.compose.read_text() == before_text.replace("scheduler:1.0.0", "scheduler:1.1.0")
    assert stack.only_container("remote")["Id"] == remote_id

    back = await updater.rollback_component("scheduler")

    assert (back.success, back.outcome, back.to_version) == (True, "rolled_back", "1.0.0"), back.message
    scheduler = stack.only_container("scheduler")
    assert project_of(scheduler) == PROJECT and scheduler["Config"]["Image"].endswith("dunebugger-scheduler:1.0.0")
    assert stack.compose.read_text() == before_text
    assert stack.only_container("remote")["Id"] == remote_id


@pytest.mark.parametrize("stack", ["dash-p"], indirect=True)
async def test_rollback_is_verified_with_the_restored_tags_own_checks(stack, github):
    """1.1.0's manifest names a health endpoint that never answers: the update fails, and
    1.0.0 comes back verified with the device's own health URL - reported as rolled back."""
    dead = f"http://127.0.0.1:{free_port()}/health"
    publish(github, "1.1.0", manifest=(
        'version: "1.1.0"\ncomponent_type: "container"\npost_update_checks:\n'
        f'  - type: "health_endpoint"\n    url: "{dead}"\n    timeout_seconds: 2\n').encode())
    before_text = stack.compose.read_text()

    result = await ComponentUpdater(stack.settings()).update_component("scheduler")

    assert (result.success, result.outcome, result.rolled_back) == (False, "rolled_back", True), result.message
    assert dead in result.message and "FAILED" not in result.message
    scheduler = stack.only_container("scheduler")
    assert project_of(scheduler) == PROJECT and scheduler["State"]["Running"]
    assert scheduler["Config"]["Image"].endswith("dunebugger-scheduler:1.0.0")
    assert stack.compose.read_text() == before_text


SEED_CONTAINER_MANIFEST = """\
version: "1.1.0"
component_type: "container"
min_remote_version: "1.0.0"
pre_update_checks:
  - type: "disk_space"
    minimum_mb: 10
  - type: "backup_exists"
    max_age_hours: 24
  - type: "service_running"
    service_name: "scheduler"
update_steps:
  - action: "backup_compose"
  - action: "update_compose"
    service: "scheduler"
    image_tag: "1.1.0"
  - action: "pull_image"
    image: "{registry}/dunebugger-scheduler:1.1.0"
  - action: "restart_service"
    service: "scheduler"
    timeout_seconds: 30
post_update_checks:
  - type: "container_running"
    container_name: "{container_name}"
  - type: "health_endpoint"
    url: "http://localhost:{port}/health"
    timeout_seconds: 60
    expected_status: 200
rollback_steps:
  - action: "restore_compose"
  - action: "restart_service"
    service: "scheduler"
"""


@pytest.mark.parametrize("stack", ["dash-p"], indirect=True)
async def test_the_seeds_container_manifest_is_honoured(stack, github, registry):
    publish(github, "1.1.0", manifest=SEED_CONTAINER_MANIFEST.format(
        registry=registry, port=stack.port, container_name="scheduler").encode())

    result = await ComponentUpdater(stack.settings()).update_component("scheduler")

    assert (result.success, result.outcome) == (True, "updated"), result.message
    assert "rollback_steps: informational only" in result.manifest
    assert stack.only_container("scheduler")["Config"]["Image"].endswith("dunebugger-scheduler:1.1.0")
    [record] = (stack.home / "backups").glob("checks-scheduler-1.1.0.json")
    assert json.loads(record.read_text())["health_timeout_seconds"] == 60


@pytest.mark.parametrize("stack", ["dash-p"], indirect=True)
@pytest.mark.parametrize(("container_name", "running", "expect"), [
    ("someone-else", True, "names the container \"someone-else\""),
    ("scheduler", False, "asks for it to run before the update"),
])
async def test_container_checks_before_the_update_refuse_and_change_nothing(stack, github, registry, docker_env,
                                                                          container_name, running, expect):
    publish(github, "1.1.0", manifest=SEED_CONTAINER_MANIFEST.format(
        registry=registry, port=stack.port, container_name=container_name).encode())
    if not running:
        docker_env.docker("stop", "-t", "1", stack.only_container("scheduler")["Id"])
    before_text, before_id = stack.compose.read_text(), stack.only_container("scheduler")["Id"]

    result = await ComponentUpdater(stack.settings()).update_component("scheduler")

    assert (result.success, result.outcome) == (False, "refused"), result.message
    assert expect in result.message and "Nothing was changed" in result.message
    assert stack.compose.read_text() == before_text
    assert stack.only_container("scheduler")["Id"] == before_id


@pytest.mark.parametrize("stack", ["dash-p"], indirect=True)
async def test_check_mode_by_hand_runs_the_read_only_checks_and_changes_nothing(stack, github, registry):
    """`ansible-playbook --check`: preflight (and the rollback's choice of a backup) run
    against the real stack, then the run ends for the host, saying so."""
    root = Path(__file__).resolve().parents[2]
    values = {
        "container_service": "scheduler",
        "container_image": f"{registry}/dunebugger-scheduler",
        "container_compose_file": str(stack.compose),
        "container_backup_path": str(stack.home / "backups"),
        "container_min_free_mb": 1,
    }

    def by_hand(playbook: str, **extra) -> str:
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "--check", "-i",
                str(root / "inventory" / "localhost.yml"), str(root / "playbooks" / playbook),
                "-e", json.dumps({**values, **extra})]
        done = subprocess.run(argv, cwd=root, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
        return done.stdout

    scheduler = stack.only_container("scheduler")["Id"]
    compose = stack.compose.read_text()
    checked = by_hand("update_container.yml", dunebugger_version="1.1.0")
    assert "check mode: the preflight checks for scheduler 1.1.0 passed; nothing was changed" in checked
    assert (stack.only_container("scheduler")["Id"], stack.compose.read_text()) == (scheduler, compose)
    assert not (stack.home / "backups").exists() or not any((stack.home / "backups").iterdir())

    publish(github, "1.1.0")
    assert (await ComponentUpdater(stack.settings()).update_component("scheduler")).success
    scheduler, compose = stack.only_container("scheduler")["Id"], stack.compose.read_text()
    checked = by_hand("rollback_container.yml")
    assert "check mode: scheduler can be rolled back from" in checked
    assert (stack.only_container("scheduler")["Id"], stack.compose.read_text()) == (scheduler, compose)
