"""Shared fixtures for tests that need the real container engine (the "device" tier).

The engine, the local registry, compose and the images come from ``ci/setup.sh``;
it writes an env file (``/var/tmp/dunebugger-ci/env.sh`` unless ``DUNEBUGGER_CI_ENV``
says otherwise) that these fixtures read. When the engine is not up the tests FAIL
with a message naming ``ci/setup.sh``: a device test that silently skips hides a broken
CI machine.

Every test in this directory is marked ``device`` (deselect with ``-m "not device"``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from support.ci_env import ENV_FILE, read_env_file

HERE = Path(__file__).parent

# `docker run` flags that boot systemd in a container on our machines (see TESTBED.md:
# --privileged fails here, so caps are granted one by one).
DEVICE_RUN_FLAGS = (
    "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined",
    "--tmpfs", "/run", "--tmpfs", "/run/lock",
    "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
    "--stop-signal", "SIGRTMIN+3",
)


def pytest_configure(config):
    config.addinivalue_line("markers", "device: needs the docker engine from ci/setup.sh")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.device)


@dataclass(frozen=True)
class DockerEnv:
    """The test bed's engine: environment for clients and a thin argv runner."""

    env: dict[str, str]

    @property
    def registry(self) -> str:
        return self.env["DUNEBUGGER_REGISTRY"]

    @property
    def device_image(self) -> str:
        return self.env["DUNEBUGGER_DEVICE_IMAGE"]

    def run(self, *argv: str, check: bool = True, timeout: float = 120, **kw):
        """Run argv (no shell) against the engine; raise with its output on failure."""
        proc = subprocess.run(
            argv, env={**self.env, **kw.pop("env", {})}, capture_output=True,
            text=True, timeout=timeout, **kw,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited {proc.returncode}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
            )
        return proc

    def docker(self, *args: str, **kw) -> str:
        return self.run("docker", *args, **kw).stdout.strip()


@pytest.fixture(scope="session")
def docker_env() -> DockerEnv:
    """The engine started by ci/setup.sh; fails (never skips) when it is not up."""
    hint = "run `bash ci/setup.sh` (as root) to start the docker engine, registry and compose"
    if not ENV_FILE.is_file():
        pytest.fail(f"{ENV_FILE} not found: the device test bed is not set up; {hint}",
                    pytrace=False)
    env = DockerEnv({**os.environ, **read_env_file(ENV_FILE)})
    probe = env.run("docker", "info", "--format", "{{.ServerVersion}}", check=False, timeout=20)
    if probe.returncode != 0:
        pytest.fail(f"docker engine at {env.env.get('DOCKER_HOST')} does not answer "
                    f"({probe.stderr.strip()}); {hint}", pytrace=False)
    return env


@pytest.fixture(scope="session")
def registry(docker_env: DockerEnv) -> str:
    """host:port of the local registry that holds the test images (ci/test-images.sh)."""
    url = f"http://{docker_env.registry}/v2/"
    try:
        urllib.request.urlopen(url, timeout=5).close()
    except OSError as exc:
        pytest.fail(f"registry {url} does not answer ({exc}); run `bash ci/setup.sh`",
                    pytrace=False)
    return docker_env.registry


@dataclass(frozen=True)
class Device:
    """A running systemd container from the device image."""

    name: str
    docker_env: DockerEnv

    def exec(self, *argv: str, check: bool = True, timeout: float = 60):
        return self.docker_env.run("docker", "exec", self.name, *argv,
                                   check=check, timeout=timeout)


def engine_sources(docker_env: DockerEnv) -> dict[str, str]:
    """Host paths a device needs to drive the test bed's engine, keyed by where the
    device sees them: the engine socket, a docker client and the compose v2 plugin."""
    sock = docker_env.env["DOCKER_HOST"].removeprefix("unix://")
    client = Path(shutil.which("docker", path=docker_env.env.get("PATH"))).resolve()
    plugin = docker_env.env["DUNEBUGGER_COMPOSE_V2"]
    return {"/var/run/docker.sock": sock,
            "/usr/local/bin/docker": str(client),
            "/usr/local/lib/docker/cli-plugins/docker-compose": plugin}


def engine_mounts(docker_env: DockerEnv) -> list[str]:
    """-v flags that let a device drive the test bed's engine, as a real device drives
    its own (engine_sources; binaries read-only). Containers it starts are siblings on
    the same engine (and so can pull from localhost:5000)."""
    flags = []
    for target, source in engine_sources(docker_env).items():
        flags += ["-v", f"{source}:{target}" + ("" if target.endswith(".sock") else ":ro")]
    return flags


@pytest.fixture(scope="session")
def engine_paths(docker_env: DockerEnv) -> dict[str, str]:
    """engine_sources of the test bed, for tests that mount them by other means (molecule)."""
    return engine_sources(docker_env)


def wait_for_systemd(device: Device, timeout: float = 60) -> str:
    """Poll `systemctl is-system-running` until it is running or degraded."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = device.exec("systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded"):
            return state
        time.sleep(0.3)
    raise AssertionError(f"systemd in {device.name} did not boot: last state {state!r}")


@pytest.fixture(scope="session")
def device_container(docker_env: DockerEnv):
    """A booted systemd device (dunebugger-device:bookworm) for the whole session."""
    name = f"dunebugger-device-test-{os.getpid()}"
    docker_env.docker("run", "-d", "--name", name, "--hostname", "dunebugger-test",
                      *DEVICE_RUN_FLAGS, *engine_mounts(docker_env),
                      docker_env.device_image, "/sbin/init")
    device = Device(name, docker_env)
    try:
        wait_for_systemd(device)
        yield device
    finally:
        docker_env.run("docker", "rm", "-f", "-v", name, check=False)
