"""Container components on a device without internet: an image archive made with
`docker save`, loaded into the real engine, then the real container playbooks - which
must not pull. The device's image lives at 127.0.0.1:9, where no registry listens, so
a pull would fail the update; the GitHub API is unreachable too. Every name this module
creates starts with `dboffline-` (the engine is shared)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.bundle.maker import BundleMaker, Wanted
from dunebugger_updater.demo import free_port
from dunebugger_updater.release.local import LocalSource
from support.cli import run_cli

UNREACHABLE = "127.0.0.1:9"  # nothing listens: neither a registry nor an API
OFFLINE_IMAGE = f"{UNREACHABLE}/dboffline-scheduler"

COMPOSE = """\
name: {project}
services:
  scheduler:
    image: {image}:1.0.0
    init: true
    ports: ["127.0.0.1:{port}:8080"]
"""


@pytest.fixture(scope="module")
def archives(docker_env, registry, tmp_path_factory) -> Iterator[dict[str, Path]]:
    """Image archives as an operator would carry them, and 1.0.0 under the offline name
    (as a device that never had a registry would hold it)."""
    folder = tmp_path_factory.mktemp("usb")
    for tag in ("1.0.0", "1.1.0", "1.2.0"):
        docker_env.docker("pull", "-q", f"{registry}/dunebugger-scheduler:{tag}")
    docker_env.docker("tag", f"{registry}/dunebugger-scheduler:1.0.0", f"{OFFLINE_IMAGE}:1.0.0")
    made = {
        "new": save(docker_env, f"{registry}/dunebugger-scheduler:1.1.0", f"{OFFLINE_IMAGE}:1.1.0", folder),
        "labelled": save(docker_env, f"{registry}/dunebugger-scheduler:1.2.0", f"{OFFLINE_IMAGE}:latest", folder),
        # 1.2.0 (its version label says so) re-tagged as 1.3.0
        "relabelled": save(docker_env, f"{registry}/dunebugger-scheduler:1.2.0", f"{OFFLINE_IMAGE}:1.3.0", folder),
        "older": save(docker_env, release_of(docker_env, f"{registry}/dunebugger-scheduler:1.0.0", "0.9.0"),
                      f"{OFFLINE_IMAGE}:0.9.0", folder),
        "other-repository": folder / "other-repository.tar",
        "not-an-archive": folder / "not-an-archive.tar",
    }
    docker_env.docker("save", "-o", str(made["other-repository"]), f"{registry}/dunebugger-scheduler:1.1.0")
    made["not-an-archive"].write_bytes(b"not a tar\n" * 1000)
    yield made
    for tag in ("1.0.0", "1.1.0", "1.2.0", "1.3.0", "latest", "0.9.0"):
        docker_env.run("docker", "rmi", f"{OFFLINE_IMAGE}:{tag}", check=False)


def release_of(docker_env, source: str, version: str) -> str:
    """An image of release `version` (its version label says so), made from `source`."""
    container = docker_env.docker("create", source)
    try:
        return docker_env.docker("commit", "--change", f"LABEL org.opencontainers.image.version={version}",
                                 container)
    finally:
        docker_env.docker("rm", container)


def save(docker_env, source: str, name: str, folder: Path) -> Path:
    """`docker save` of `source` under `name`; the name is then removed from the engine."""
    archive = folder / f"{name.rsplit('/', 1)[-1].replace(':', '-')}.tar"
    docker_env.docker("tag", source, name)
    docker_env.docker("save", "-o", str(archive), name)
    docker_env.docker("rmi", name)
    return archive


@dataclass
class Stack:
    home: Path
    compose: Path
    config: Path
    docker_env: object

    def settings(self):
        return load_settings(self.config, environ={})

    def container(self) -> dict:
        ids = self.docker_env.docker("ps", "-q", "--filter", "label=com.docker.compose.service=scheduler",
                                     "--filter", f"label=com.docker.compose.project.working_dir={self.home}").split()
        assert len(ids) == 1, ids
        return json.loads(self.docker_env.docker("inspect", ids[0]))[0]

    def has_image(self, reference: str) -> bool:
        return self.docker_env.run("docker", "image", "inspect", reference, check=False).returncode == 0

    def offline_tags(self) -> set[str]:
        """The tags the engine holds of the device's image."""
        return set(self.docker_env.docker("images", "--format", "{{.Tag}}", OFFLINE_IMAGE).split())


def make_stack(tmp_path: Path, docker_env, github_url: str, image: str) -> Stack:
    home = tmp_path / "device"
    home.mkdir()
    port = free_port()
    compose = home / "docker-compose.yml"
    compose.write_text(COMPOSE.format(project=f"dboffline-{tmp_path.name.lower()[-20:]}".rstrip("-_"),
                                      image=image, port=port))
    config = home / "dunebugger.conf"
    config.write_text(
        "[Updater]\n"
        f"githubApiUrl = {github_url}\n"
        f"dockerComposePath = {compose}\n"
        f"backupPath = {home / 'backups'}\n"
        f"statePath = {home / 'state'}\n"
        f"coreInstallPath = {home / 'core'}\n"
        "[Component:scheduler]\n"
        f"image = {image}\n"
        f"healthUrl = http://127.0.0.1:{port}/health\n"
        "healthTimeoutSeconds = 20\n"
    )
    os.environ.update({k: v for k, v in docker_env.env.items() if k.startswith(("DOCKER", "DUNEBUGGER"))})
    docker_env.run("docker", "compose", "-f", str(compose), "up", "-d", timeout=120)
    return Stack(home, compose, config, docker_env)


@pytest.fixture
def stack(tmp_path, docker_env, archives) -> Iterator[Stack]:
    """A device running scheduler 1.0.0 of the offline image; no registry, no API."""
    running = make_stack(tmp_path, docker_env, f"http://{UNREACHABLE}", OFFLINE_IMAGE)
    yield running
    docker_env.run("docker", "compose", "-f", str(running.compose), "down", "-t", "1", check=False, timeout=120)


async def test_update_and_rollback_from_an_image_archive(stack, archives):
    assert not stack.has_image(f"{OFFLINE_IMAGE}:1.1.0")
    before = stack.compose.read_text()
    updater = ComponentUpdater(stack.settings())

    updated = await updater.update_component("scheduler", source=LocalSource(archives["new"]))

    assert (updated.success, updated.outcome, updated.to_version) == (True, "updated", "1.1.0"), updated.message
    container = stack.container()
    assert container["Config"]["Image"] == f"{OFFLINE_IMAGE}:1.1.0" and container["State"]["Running"]
    assert stack.compose.read_text() == before.replace(":1.0.0", ":1.1.0")

    back = await updater.rollback_component("scheduler")

    assert (back.success, back.outcome, back.to_version) == (True, "rolled_back", "1.0.0"), back.message
    assert stack.container()["Config"]["Image"] == f"{OFFLINE_IMAGE}:1.0.0"
    assert stack.compose.read_text() == before
    assert [(e.action, e.outcome) for e in updater.get_history()] == [("update", "updated"), ("rollback", "rolled_back")]


async def test_the_version_of_an_untagged_image_comes_from_its_label(stack, archives):
    result = await ComponentUpdater(stack.settings()).update_component(
        "scheduler", dry_run=True, source=LocalSource(archives["labelled"]))

    assert (result.success, result.outcome, result.to_version) == (True, "dry_run", "1.2.0"), result.message
    assert f"would load {OFFLINE_IMAGE}:1.2.0 from {archives['labelled']}" in result.message
    assert not stack.has_image(f"{OFFLINE_IMAGE}:1.2.0"), "a dry run loads nothing"


REFUSALS = {
    "other-repository": ("dunebugger-scheduler:1.1.0, not an image of the configured " + OFFLINE_IMAGE, None),
    "older": ("0.9.0 is older than the running 1.0.0; update never goes back (use rollback)", None),
    "not-an-archive": ("is not an image archive: it is not a tar archive", None),
    "relabelled": (f"names more than one release of {OFFLINE_IMAGE} (tag 1.3.0, org.opencontainers.image.version "
                   "label 1.2.0); an image is one release, whatever it is tagged", None),
    "new": ("sha256 mismatch for dboffline-scheduler-1.1.0.tar: expected " + "f" * 64 + " (--sha256)", "f" * 64),
}


@pytest.mark.parametrize("archive", sorted(REFUSALS))
async def test_refusals_change_nothing(stack, archives, archive):
    expect, sha256 = REFUSALS[archive]
    container, compose, tags = stack.container()["Id"], stack.compose.read_text(), stack.offline_tags()
    updater = ComponentUpdater(stack.settings())

    result = await updater.update_component("scheduler", source=LocalSource(archives[archive], sha256=sha256))

    assert (result.success, result.outcome) == (False, "refused")
    assert expect in result.message and result.message.endswith("Nothing was changed."), result.message
    assert stack.container()["Id"] == container and stack.compose.read_text() == compose
    assert stack.offline_tags() == tags, "nothing was loaded"
    [entry] = updater.get_history()
    assert (entry.outcome, entry.message) == ("refused", result.message)


async def test_an_image_pulled_from_a_registry_must_be_the_release_its_label_names(
        tmp_path, docker_env, registry, github):
    """The playbook reads the version label of what it pulled before it switches: 1.2.0
    pushed again as 1.3.0 is not release 1.3.0."""
    image = f"{registry}/dboffline-relabelled"
    for source, tag in (("1.0.0", "1.0.0"), ("1.2.0", "1.3.0")):
        docker_env.docker("tag", f"{registry}/dunebugger-scheduler:{source}", f"{image}:{tag}")
        docker_env.docker("push", "-q", f"{image}:{tag}")
    docker_env.docker("rmi", f"{image}:1.3.0")  # the update must pull it
    github.add_release("marco-svitol/dunebugger-scheduler", "v1.3.0")
    stack = make_stack(tmp_path, docker_env, github.url, image)
    try:
        container, compose = stack.container()["Id"], stack.compose.read_text()

        result = await ComponentUpdater(stack.settings()).update_component("scheduler")

        assert (result.success, result.outcome) == (False, "failed"), result.message
        assert f"{image}:1.3.0 is labelled release 1.2.0 (org.opencontainers.image.version)" in result.message
        assert result.message.endswith("Nothing was changed."), result.message
        assert stack.container()["Id"] == container and stack.compose.read_text() == compose
    finally:
        docker_env.run("docker", "compose", "-f", str(stack.compose), "down", "-t", "1", check=False, timeout=120)
        docker_env.run("docker", "rmi", f"{image}:1.0.0", f"{image}:1.3.0", check=False)


def test_the_cli_refuses_an_image_of_another_repository_with_exit_status_2(stack, archives):
    run = run_cli("update", "scheduler", "--from", str(archives["other-repository"]), config=stack.config, timeout=120)
    assert run.returncode == 2, run.stderr
    assert "not an image of the configured" in run.stdout


async def test_a_bundle_made_online_carries_the_image(tmp_path, docker_env, registry, github):
    """bundle create pulls the release's image from the registry and saves it; a device
    loads it from the bundle and recreates the service."""
    github.add_release("marco-svitol/dunebugger-scheduler", "v1.1.0", body="scheduler 1.1.0")
    image = f"{registry}/dunebugger-scheduler"
    stack = make_stack(tmp_path, docker_env, github.url, image)
    try:
        bundle = tmp_path / "usb" / "bundle"
        [entry] = await BundleMaker(stack.settings()).create([Wanted("scheduler")], bundle)
        assert (entry.version, entry.archive) == ("1.1.0", "dunebugger-scheduler-1.1.0.tar")
        github.reset()

        result = await ComponentUpdater(stack.settings()).update_component("scheduler", source=LocalSource(bundle))

        assert (result.success, result.outcome, result.to_version) == (True, "updated", "1.1.0"), result.message
        assert stack.container()["Config"]["Image"] == f"{image}:1.1.0"
        assert github.requests == []
    finally:
        docker_env.run("docker", "compose", "-f", str(stack.compose), "down", "-t", "1", check=False, timeout=120)
