"""Downtime of a compose service during an update, and the time of a rollback.

Needs the test bed (`bash ci/setup.sh`: engine, local registry, test images). A
stand-in scheduler publishes its /health on loopback, polled every 10 ms; downtime is
the longest stretch without a 200. Compared in the same run:
  - the container's own stop+start (`compose stop` + `compose start`): the baseline;
  - this project's update (pull first, then `up -d --no-deps` of that one service);
  - stop first, then `up -d` (the image is pulled while the service is down);
and the wall time and downtime of `rollback scheduler`. Medians over --repeat rounds.

    . /var/tmp/dunebugger-ci/env.sh && .venv/bin/python bench/container_update_bench.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from core_update_bench import HealthPoller
from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.demo import free_port
from dunebugger_updater.demo.fake_github import FakeGitHub

REGISTRY = os.environ.get("DUNEBUGGER_REGISTRY", "localhost:5000")
IMAGE = f"{REGISTRY}/dunebugger-scheduler"
COMPOSE = """services:
  scheduler:
    image: {image}:1.0.0
    ports: ["127.0.0.1:{port}:8080"]
"""


def compose(path: Path, *args: str) -> None:
    subprocess.run(["docker", "compose", "-f", str(path), *args], check=True, capture_output=True)


def forget_image(tag: str) -> None:
    # Make every round pull from the registry, as a device does.
    subprocess.run(["docker", "rmi", "-f", f"{IMAGE}:{tag}"], capture_output=True)


def wait_healthy(url: str, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.02)
    raise TimeoutError(url)


def one_round(home: Path, github: FakeGitHub) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}/health"
    path = home / "docker-compose.yml"
    path.write_text(COMPOSE.format(image=IMAGE, port=port))
    config = home / "dunebugger.conf"
    config.write_text(
        f"[Updater]\ngithubApiUrl = {github.url}\ndockerComposePath = {path}\n"
        f"backupPath = {home / 'backups'}\nstatePath = {home / 'state'}\n"
        f"coreInstallPath = {home / 'core'}\n"
        f"[Component:scheduler]\nimage = {IMAGE}\nhealthUrl = {url}\n"
    )
    numbers = {}
    try:
        compose(path, "up", "-d")
        wait_healthy(url)
        with HealthPoller(url) as poller:
            compose(path, "stop", "scheduler")
            compose(path, "start", "scheduler")
            wait_healthy(url)
        numbers["baseline"] = poller.longest_gap

        forget_image("1.1.0")
        with HealthPoller(url) as poller:
            result = asyncio.run(ComponentUpdater(load_settings(config, environ={})).update_component("scheduler"))
        assert result.success, result.message
        numbers["ours"] = poller.longest_gap

        with HealthPoller(url) as poller:
            started = time.monotonic()
            result = asyncio.run(ComponentUpdater(load_settings(config, environ={})).rollback_component("scheduler"))
            numbers["rollback_total"] = time.monotonic() - started
        assert result.success, result.message
        numbers["rollback_down"] = poller.longest_gap

        forget_image("1.1.0")
        path.write_text(path.read_text().replace(":1.0.0", ":1.1.0"))
        with HealthPoller(url) as poller:
            compose(path, "stop", "scheduler")
            compose(path, "up", "-d", "scheduler")
            wait_healthy(url)
        numbers["stop_then_pull"] = poller.longest_gap
    finally:
        compose(path, "down", "-t", "1")
    return numbers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rounds = []
    with FakeGitHub() as github:
        github.add_release("marco-svitol/dunebugger-scheduler", "v1.1.0")
        for index in range(args.repeat):
            with tempfile.TemporaryDirectory() as tmp:
                rounds.append(one_round(Path(tmp), github))
            print(f"round {index + 1}: " + ", ".join(f"{k} {v:.2f} s" for k, v in rounds[-1].items()), flush=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rounds)

    base = median("baseline")
    print(f"\nmedians of {args.repeat} rounds")
    print(f"container stop+start (baseline)      {base:6.2f} s")
    print(
        f"update, pull first (this project)     {median('ours'):6.2f} s   baseline {median('ours') - base:+.2f} s "
        f"(target: +0.5 s at most)"
    )
    print(
        f"update, stop then up (pull while down) {median('stop_then_pull'):6.2f} s   baseline "
        f"{median('stop_then_pull') - base:+.2f} s"
    )
    print(f"rollback: downtime                    {median('rollback_down'):6.2f} s")
    print(f"rollback: total                       {median('rollback_total'):6.2f} s")


if __name__ == "__main__":
    main()
