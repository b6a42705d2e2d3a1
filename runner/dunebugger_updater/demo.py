"""`dunebugger-updater demo`: the whole update story, offline, in a temporary directory.

It starts a loopback release server holding generated releases of a small sample app,
lays out a sandbox device (core run by the `command` service manager), and then runs,
through the real playbooks: a check, a dry run, an update to a good release, and an
update to an unhealthy release that is rolled back. Everything is removed at the end,
unless something went wrong: then the sandbox stays (its path is printed) so that what
the messages point at (playbook artifacts under state/runs) can still be read.

`DemoDevice` is also what the integration tests stand on.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

import httpx

from . import messages, tables
from .config import Settings, load_settings
from .errors import ConfigError, os_reason
from .fake_github import FakeGitHub
from .sandbox import releases
from .sandbox.fingerprint import tree_fingerprint
from .updater import ComponentUpdater

CORE_REPO = "marco-svitol/dunebugger"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class DemoDevice:
    """A sandbox device plus a release server; a context manager that cleans up."""

    def __init__(self, home: Path, github: FakeGitHub, *, installed: str = "1.0.0", extra_config: str = "",
                 health_timeout_seconds: int = 8) -> None:
        self.home = home
        self.github = github
        self.port = free_port()
        self.state = home / "state"
        self.artifacts = home / "artifacts"
        self.health_timeout_seconds = health_timeout_seconds
        releases.make_sandbox(home, installed, port=self.port)
        self.config = self._write_config(extra_config)

    def _write_config(self, extra: str) -> Path:
        appctl = f"{sys.executable} -m dunebugger_updater.sandbox.appctl --home {self.home}"
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
            f"python = {sys.executable}\n"
            + extra
        )
        return config

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"

    def settings(self, environ: dict[str, str] | None = None) -> Settings:
        return load_settings(self.config, environ=environ or {})

    def appctl(self, verb: str) -> int:
        argv = [sys.executable, "-m", "dunebugger_updater.sandbox.appctl", "--home", str(self.home), verb]
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

    def publish(self, version: str, *, health: str = "ok", manifest: bytes | None = None,
                requirements: tuple[str, ...] = (), **fields: Any) -> Path:
        """Build a release of the sample app and publish it as tag v<version>."""
        archive = releases.build_release(self.artifacts, version, health=health, requirements=requirements)
        name = f"dunebugger-{version}.tar.gz"
        self.github.add_release(CORE_REPO, f"v{version}", body=f"Sample app {version}",
                                assets={name: archive.read_bytes()}, manifest=manifest, **fields)
        return archive

    def publish_archive(self, version: str, archive: Path, **fields: Any) -> None:
        name = f"dunebugger-{version}.tar.gz"
        self.github.add_release(CORE_REPO, f"v{version}", assets={name: archive.read_bytes()}, **fields)

    def fingerprint(self) -> str:
        """Hash of the device's files, the updater's own state and the test artifacts aside."""
        return tree_fingerprint(self.home, skip_top=("state", "artifacts"))

    def app_pid(self) -> str:
        return (self.home / "app.pid").read_text().strip()

    def close(self) -> None:
        self.stop()


Scenario = Callable[[Path, Callable[[str], None]], bool]  # (sandbox home, printer) -> all went well


def run_demo(out: TextIO = sys.stdout, *, scenario: Scenario | None = None, json_output: bool = False,
             verbose: bool = False) -> int:
    say = _printer(out)
    home = _sandbox_home()
    ok = False
    try:
        ok = (scenario or _demonstration(json_output, verbose))(home, say)
    finally:
        if ok:
            shutil.rmtree(home, ignore_errors=True)
        else:  # what the messages point at (playbook artifacts under state/runs) stays
            say(f"The sandbox is kept for inspection in {home}; remove it with: rm -rf {home}")
    return 0 if ok else 1


def _sandbox_home() -> Path:
    # An explicit TMPDIR is obeyed, not silently replaced by /tmp as tempfile would.
    where = os.environ.get("TMPDIR") or tempfile.gettempdir()
    try:
        return Path(tempfile.mkdtemp(prefix="dunebugger-demo-", dir=where))
    except OSError as exc:
        raise ConfigError(f"cannot create the demo's sandbox in {where}: "
                          f"{os_reason(exc)}: set TMPDIR to a directory you may write") from None


def _demonstration(json_output: bool, verbose: bool) -> Scenario:
    """The demo's story; it prints what the CLI would print for each command (its JSON
    with `json_output`), the phases of each run (every task when `verbose`)."""

    def demonstrate(home: Path, say: Callable[[str], None]) -> bool:
        with ExitStack() as stack:
            github = stack.enter_context(FakeGitHub())
            # The sample app answers within a second: a short health timeout keeps the
            # rollback of the broken release quick.
            device = DemoDevice(home, github, health_timeout_seconds=3)
            stack.callback(device.close)
            device.publish("1.1.0")
            for repo in ("marco-svitol/dunebugger-scheduler", "marco-svitol/dunebugger-remote"):
                github.add_release(repo, "v1.0.0", body="Not installed on this sandbox device")
            device.start()

            say(f"Sandbox device in {home}; core 1.0.0 serving {device.health_url}")
            updater = ComponentUpdater(device.settings())
            updater.add_listener(_progress_printer(say, verbose))
            flag = " --json" if json_output else ""

            def show(command: str, message: dict[str, Any], text: str) -> None:
                say(f"\n$ dunebugger-updater {command}{flag}")
                say(json.dumps(message, indent=2) if json_output else text)

            statuses = asyncio.run(updater.check_updates(force=True))
            show("check", messages.check_result(statuses), tables.status_table(statuses))

            dry = asyncio.run(updater.update_component("core", dry_run=True))
            show("update core --dry-run", messages.update_result(dry), dry.message)

            say(f"\n$ dunebugger-updater update core{flag}")
            good = asyncio.run(updater.update_component("core"))
            say(json.dumps(messages.update_result(good), indent=2) if json_output else good.message)
            say(f"health now: {device.health()}")

            say("\nPublishing 1.2.0, a release whose health check fails ...")
            device.publish("1.2.0", health="fail")
            say(f"$ dunebugger-updater update core{flag}")
            bad = asyncio.run(updater.update_component("core"))
            say(json.dumps(messages.update_result(bad), indent=2) if json_output else bad.message)
            say(f"health now: {device.health()}")

            ok = good.success and bad.rolled_back and (device.health() or {}).get("version") == "1.1.0"
            say("\nDemo finished: " + ("update applied, bad release rolled back." if ok else "SOMETHING WENT WRONG."))
            return ok

    return demonstrate


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(text: str) -> None:
        print(text, file=out, flush=True)

    return say


def _progress_printer(say: Callable[[str], None], verbose: bool) -> Callable[[dict[str, Any]], None]:
    """A line per phase as a run enters it; with `verbose` a line per task."""
    last: list[str] = []

    def show(message: dict[str, Any]) -> None:
        body = message["body"]
        where = f"  [{body['done'] + 1}/{body['total']}] {body['step']}"
        if verbose:
            say(f"{where}: {body['task']}")
        elif not last or last[-1] != body["step"]:
            say(where)
        last[:] = [body["step"]]

    return show


if __name__ == "__main__":
    sys.exit(run_demo())
