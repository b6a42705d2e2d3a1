"""The device test bed itself works: systemd device, registry images, compose v1 and v2.

These guard the assumptions every molecule scenario and container-update test builds on,
so a broken CI machine shows up here first and plainly.
"""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

COMPOSE_FILE = """\
services:
  scheduler:
    image: {registry}/dunebugger-scheduler:${{SCHEDULER_TAG}}
  remote:
    image: {registry}/dunebugger-remote:${{REMOTE_TAG}}
"""


def test_device_runs_systemd_and_a_transient_unit(device_container):
    assert device_container.exec("cat", "/proc/1/comm").stdout.strip() == "systemd"
    unit = f"dunebugger-probe-{uuid.uuid4().hex[:8]}"

    device_container.exec("systemd-run", f"--unit={unit}", "/bin/sleep", "300")
    active = device_container.exec("systemctl", "is-active", unit, check=False)
    device_container.exec("systemctl", "stop", unit)
    stopped = device_container.exec("systemctl", "is-active", unit, check=False)

    assert active.stdout.strip() == "active"
    assert stopped.stdout.strip() in ("inactive", "unknown")  # transient units vanish


def test_device_drives_the_engine_with_compose_v2(device_container, registry):
    out = device_container.exec("docker", "compose", "version", "--short").stdout
    assert out.strip().lstrip("v").split(".")[0].isdigit()
    assert device_container.exec("docker", "info", "--format", "{{.ServerVersion}}").stdout


def _container_id(docker_env, compose, service):
    return docker_env.run(*compose, "ps", "-q", service).stdout.strip()


def _wait_healthy(docker_env, container_id, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = json.loads(docker_env.docker("inspect", "--format", "{{json .State}}", container_id))
        health = state.get("Health", {}).get("Status")
        if health == "healthy":
            return
        time.sleep(0.3)
    raise AssertionError(f"container {container_id[:12]} not healthy: {state}")


def _image_version(docker_env, container_id):
    return docker_env.docker(
        "inspect", "--format",
        '{{index .Config.Labels "org.opencontainers.image.version"}}', container_id)


@pytest.fixture(params=["v2", "v1"])
def compose(request, docker_env, registry, tmp_path):
    """argv prefix for one compose project on the test images, torn down afterwards."""
    (tmp_path / "docker-compose.yml").write_text(COMPOSE_FILE.format(registry=registry))
    project = f"dbinfra{os.getpid()}{request.param}"
    binary = ["docker", "compose"] if request.param == "v2" else [
        docker_env.env["DUNEBUGGER_COMPOSE_V1"]]
    argv = (*binary, "--project-directory", str(tmp_path), "-p", project)
    if request.param == "v1":  # v1 has no --project-directory before the file is found
        argv = (*binary, "-f", str(tmp_path / "docker-compose.yml"), "-p", project)
    yield argv
    docker_env.run(*argv, "down", "-v", "-t", "1", check=False,
                   env={"SCHEDULER_TAG": "x", "REMOTE_TAG": "x"})


def test_recreating_one_service_leaves_the_other_running(docker_env, compose):
    tags = {"SCHEDULER_TAG": "1.0.0", "REMOTE_TAG": "1.0.0"}
    docker_env.run(*compose, "up", "-d", env=tags)
    old = {s: _container_id(docker_env, compose, s) for s in ("scheduler", "remote")}
    for cid in old.values():
        _wait_healthy(docker_env, cid)

    tags["SCHEDULER_TAG"] = "1.1.0"
    docker_env.run(*compose, "pull", "scheduler", env=tags)
    docker_env.run(*compose, "up", "-d", "--no-deps", "scheduler", env=tags)
    new = {s: _container_id(docker_env, compose, s) for s in ("scheduler", "remote")}

    assert new["remote"] == old["remote"]
    assert new["scheduler"] != old["scheduler"]
    assert _image_version(docker_env, new["scheduler"]) == "1.1.0"
    _wait_healthy(docker_env, new["scheduler"])
