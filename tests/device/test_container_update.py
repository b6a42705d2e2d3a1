"""Container components through the Python layer: real engine, local registry, compose
v2 and v1, the real playbooks. Other services must never be recreated by an update."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.demo.fake_github import FakeGitHub
from support.cli import cli_argv

COMPOSE = """\
# DuneBugger services on a test device. Comments, order and quoting must survive updates.
services:
  scheduler:
    image: {registry}/dunebugger-scheduler:1.0.0   # updated by the updater
    init: true
    ports: ["127.0.0.1:{port}:8080"]
  remote:
    image: "{registry}/dunebugger-remote:1.0.0"
    init: true
"""


@dataclass
class ComposeDevice:
    home: Path
    compose: Path
    config: Path
    docker_env: object
    compose_argv: tuple[str, ...]

    def settings(self):
        return load_settings(self.config, environ={})

    def container_id(self, service: str) -> str:
        return self.docker_env.docker(*self.compose_argv[1:], "-f", str(self.compose), "ps", "-q", service) \
            if self.compose_argv[0] == "docker" else \
            self.docker_env.run(*self.compose_argv, "-f", str(self.compose), "ps", "-q", service).stdout.strip()

    def image_id(self, service: str) -> str:
        return self.docker_env.docker("inspect", "--format", "{{.Image}}", self.container_id(service))


def publish(github: FakeGitHub, *versions: str) -> None:
    for version in versions:
        github.add_release("marco-svitol/dunebugger-scheduler", f"v{version}", body=f"scheduler {version}")


@pytest.fixture(scope="module")
def version_tags(docker_env, registry) -> None:
    """Version-shaped tags for the misbehaving test images (releases are versions)."""
    for repo in ("dunebugger-scheduler",):
        for source, target in (("1.8.0-unhealthy", "1.8.0"), ("1.9.0-crash", "1.9.0")):
            docker_env.docker("pull", f"{registry}/{repo}:{source}")
            docker_env.docker("tag", f"{registry}/{repo}:{source}", f"{registry}/{repo}:{target}")
            docker_env.docker("push", f"{registry}/{repo}:{target}")


def make_device(tmp_path: Path, docker_env, registry, compose_argv: tuple[str, ...]) -> ComposeDevice:
    from dunebugger_updater.demo import free_port

    home = tmp_path / "device"
    home.mkdir()
    compose = home / "docker-compose.yml"
    compose.write_text(COMPOSE.format(registry=registry, port=free_port()))
    config = home / "dunebugger.conf"
    return ComposeDevice(home, compose, config, docker_env, compose_argv)


@pytest.fixture(params=[("docker", "compose"), ("docker-compose",)], ids=["compose-v2", "compose-v1"])
def device(request, tmp_path, docker_env, registry, version_tags, github) -> Iterator[ComposeDevice]:
    argv = request.param
    sandbox = make_device(tmp_path, docker_env, registry, argv)
    # v2 is found by discovery (as on a device); v1 has to be asked for by name.
    compose_key = "composeCommand = docker-compose\n" if argv == ("docker-compose",) else ""
    sandbox.config.write_text(
        "[Updater]\n"
        f"githubApiUrl = {github.url}\n"
        f"dockerComposePath = {sandbox.compose}\n"
        f"backupPath = {sandbox.home / 'backups'}\n"
        f"statePath = {sandbox.home / 'state'}\n"
        f"coreInstallPath = {sandbox.home / 'core'}\n"
        f"{compose_key}"
        "[Component:scheduler]\n"
        f"image = {registry}/dunebugger-scheduler\n"
        "healthTimeoutSeconds = 20\n"
        "[Component:remote]\n"
        f"image = {registry}/dunebugger-remote\n"
    )
    os.environ.update({k: v for k, v in docker_env.env.items() if k.startswith(("DOCKER", "DUNEBUGGER"))})
    # Rollbacks re-tag images locally; start every test from the registry's truth.
    for image in ("dunebugger-scheduler:1.0.0", "dunebugger-scheduler:1.1.0", "dunebugger-remote:1.0.0"):
        docker_env.docker("pull", "-q", f"{registry}/{image}")
    docker_env.run(*argv, "-f", str(sandbox.compose), "up", "-d", timeout=120)
    yield sandbox
    docker_env.run(*argv, "-f", str(sandbox.compose), "down", "-t", "1", check=False, timeout=120)


async def test_update_recreates_only_that_service_and_edits_only_its_tag(device, github):
    publish(github, "1.1.0")
    before_text = device.compose.read_text()
    remote_id = device.container_id("remote")

    updater = ComponentUpdater(device.settings())
    assert (await updater.check_updates(force=True))["scheduler"].update_available
    result = await updater.update_component("scheduler")

    assert (result.success, result.outcome, result.to_version) == (True, "updated", "1.1.0"), result.message
    assert device.compose.read_text() == before_text.replace("dunebugger-scheduler:1.0.0", "dunebugger-scheduler:1.1.0")
    assert device.container_id("remote") == remote_id, "remote was recreated by an update of scheduler"
    versions = updater.get_all_versions()
    assert versions["scheduler"].current_version == "1.1.0" and versions["remote"].current_version == "1.0.0"


async def test_unhealthy_release_rolls_back_to_the_exact_image(device, github, docker_env, registry):
    publish(github, "1.1.0")
    updater = ComponentUpdater(device.settings())
    assert (await updater.update_component("scheduler")).success
    good_text, good_image, remote_id = device.compose.read_text(), device.image_id("scheduler"), device.container_id("remote")

    # Move the 1.1.0 tag in the registry and locally: a rollback must still bring back
    # exactly the image that ran, not whatever the tag names now.
    docker_env.docker("pull", f"{registry}/dunebugger-scheduler:1.2.0")
    docker_env.docker("tag", f"{registry}/dunebugger-scheduler:1.2.0", f"{registry}/dunebugger-scheduler:1.1.0")

    publish(github, "1.8.0")
    result = await updater.update_component("scheduler")

    assert not result.success and result.rolled_back, result.message
    assert "unhealthy" in result.message and "Rolled back to 1.1.0" in result.message
    assert device.compose.read_text() == good_text
    assert device.image_id("scheduler") == good_image
    assert device.container_id("remote") == remote_id


V2_ONLY = pytest.mark.parametrize("device", [("docker", "compose")], indirect=True, ids=["compose-v2"])


@V2_ONLY
async def test_missing_tag_changes_nothing(device, github):
    github.add_release("marco-svitol/dunebugger-scheduler", "v1.5.0")  # no such image tag
    before_text, scheduler_id = device.compose.read_text(), device.container_id("scheduler")

    result = await ComponentUpdater(device.settings()).update_component("scheduler")

    assert not result.success and result.outcome == "failed"
    assert "Pull the new image" in result.message and "Nothing was changed" in result.message
    assert device.compose.read_text() == before_text
    assert device.container_id("scheduler") == scheduler_id


@V2_ONLY
async def test_crashing_release_rolls_back_and_rollback_verb_restores_previous(device, github):
    publish(github, "1.1.0", "1.9.0")
    updater = ComponentUpdater(device.settings())
    crashed = await updater.update_component("scheduler", version="1.9.0")
    assert crashed.rolled_back and "Rolled back to 1.0.0" in crashed.message, crashed.message

    assert (await updater.update_component("scheduler", version="1.1.0")).success
    back = await updater.rollback_component("scheduler")
    assert back.success, back.message
    assert updater.get_all_versions()["scheduler"].current_version == "1.0.0"


def publish_remote(github: FakeGitHub, version: str) -> None:
    github.add_release("marco-svitol/dunebugger-remote", f"v{version}", body=f"remote {version}")


@V2_ONLY
async def test_self_hosted_remote_update_runs_detached(device, github):
    publish_remote(github, "1.1.0")
    progress: list[dict] = []
    updater = ComponentUpdater(device.settings())
    updater.add_listener(progress.append)
    scheduler_id = device.container_id("scheduler")

    result = await updater.update_component("remote")

    assert result.success, result.message
    assert (device.home / "state" / "runs" / result.run_id / "detached.pid").is_file()
    assert progress and progress[-1]["body"]["component"] == "remote", "events of the detached run were relayed"
    assert device.container_id("scheduler") == scheduler_id


@V2_ONLY
def test_caller_killed_during_self_update_result_reported_on_next_start(device, github):
    """The updater that asked for the update dies (its container is replaced, say);
    the detached run finishes and the next start reports how it ended."""
    import json
    import signal
    import subprocess
    import time

    publish_remote(github, "1.1.0")
    environ = {**os.environ, **device.docker_env.env}
    argv = cli_argv(config=device.config)
    caller = subprocess.Popen([*argv, "update", "remote", "--json"], env=environ,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not list((device.home / "state" / "runs").glob("*/detached.pid")):
        assert caller.poll() is None and time.monotonic() < deadline, caller.communicate()
        time.sleep(0.05)
    caller.send_signal(signal.SIGKILL)
    caller.wait()

    recovered = subprocess.run([*argv, "recover", "--json"], env=environ, capture_output=True, text=True, timeout=300)
    assert recovered.returncode == 0, recovered.stderr
    body = json.loads(recovered.stdout)["body"]
    assert (body["component"], body["outcome"], body["to_version"]) == ("remote", "updated", "1.1.0"), body
    history = [json.loads(line) for line in (device.home / "state" / "history.jsonl").read_text().splitlines()]
    assert history[-1]["action"] == "recovery" and history[-1]["outcome"] == "updated"
