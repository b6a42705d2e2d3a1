"""A sandbox device for the demo and the tests: a stand-in core app served from a
home directory under the `command` service manager, a config that points the updater at
it, and a loopback release server to publish releases of it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from ..config import Settings, load_settings
from .fake_github import FakeGitHub
from .sandbox import releases

CORE_REPO = "marco-svitol/dunebugger"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoDevice:
    """A sandbox device plus a release server; a context manager that cleans up."""

    def __init__(
        self,
        home: Path,
        github: FakeGitHub,
        *,
        installed: str = "1.0.0",
        extra_config: str = "",
        health_timeout_seconds: int = 8,
    ) -> None:
        self.home = home
        self.github = github
        self.port = free_port()
        self.state = home / "state"
        self.artifacts = home / "artifacts"
        self.health_timeout_seconds = health_timeout_seconds
        releases.make_sandbox(home, installed, port=self.port)
        self.config = self._write_config(extra_config)

    def _write_config(self, extra: str) -> Path:
        appctl = f"{sys.executable} -m dunebugger_updater.demo.sandbox.appctl --home {self.home}"
        config = self.home / "dunebugger.conf"
        config.write_text(
            "[Updater]\n"
            f"githubApiUrl = {self.github.url}\n"
            f"coreInstallPath = {self.home / 'core'}\n"
            f"backupPath = {self.home / 'backups'}\n"
            f"statePath = {self.state}\n"
            f"dockerComposePath = {self.home / 'docker-compose.yml'}\n"
            "\n[Component:core]\n"
            "serviceManager = command\n"
            f"startCommand = {appctl} start\n"
            f"stopCommand = {appctl} stop\n"
            f"statusCommand = {appctl} status\n"
            f"healthUrl = {self.health_url}\n"
            f"healthTimeoutSeconds = {self.health_timeout_seconds}\n"
            f"python = {sys.executable}\n" + extra
        )
        return config

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def settings(self, environ: dict[str, str] | None = None) -> Settings:
        return load_settings(self.config, environ=environ or {})

    def appctl(self, verb: str) -> int:
        argv = [sys.executable, "-m", "dunebugger_updater.demo.sandbox.appctl", "--home", str(self.home), verb]
        return subprocess.run(argv, capture_output=True, timeout=60).returncode

    def start(self) -> None:
        self.appctl("start")
        self.wait_healthy()

    def stop(self) -> None:
        self.appctl("stop")

    def health(self) -> dict[str, Any] | None:
        try:
            answer = httpx.get(self.health_url, timeout=1.0)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def wait_healthy(self, timeout: float = 15.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (answer := self.health()) is not None:
                return answer
            time.sleep(0.05)
        raise TimeoutError(f"the sandbox app on port {self.port} did not become healthy")

    def publish(
        self,
        version: str,
        *,
        health: str = "ok",
        manifest: bytes | None = None,
        requirements: tuple[str, ...] = (),
        **fields: Any,
    ) -> Path:
        """Build a release of the sample app and publish it as tag v<version>."""
        archive = releases.build_release(self.artifacts, version, health=health, requirements=requirements)
        name = f"dunebugger-{version}.tar.gz"
        self.github.add_release(
            CORE_REPO,
            f"v{version}",
            body=f"Sample app {version}",
            assets={name: archive.read_bytes()},
            manifest=manifest,
            **fields,
        )
        return archive

    def close(self) -> None:
        self.stop()
