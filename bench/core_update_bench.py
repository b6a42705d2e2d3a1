"""A core update against the same work done by hand, measured in the same run.

Each round builds a release of the sample app with real requirements (installed from a
local wheel directory) and times, in turn:
  - the service's own restart (stop, start, healthy): the baseline for downtime;
  - the procedure by hand: extract into a new directory, `python -m venv`, `pip install
    -r requirements.txt`, stop, point the link at it, start, healthy: the baseline for
    the wall time;
  - `update core` through the updater (download, verify, the real playbook), with the
    health endpoint polled every 10 ms: downtime is the longest stretch without a
    healthy answer.
It also counts the module executions of the update from the run's own events (tasks
that ran a module on the device; controller-side actions such as set_fact and assert
are not module executions).

    .venv/bin/python bench/core_update_bench.py [--rounds 3] [--packages requests,...]

Prints every round, then medians and the ratios of medians and of pairs. The wheels
are fetched once with `pip download` into bench/.wheels (PyPI only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import httpx

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.fake_github import FakeGitHub
from dunebugger_updater.sandbox import releases

WHEELS = Path(__file__).with_name(".wheels")
DEFAULT_PACKAGES = "requests,urllib3,idna,certifi,charset-normalizer,six"
# Actions that Ansible runs on the controller: they cost a task, not a module execution.
CONTROLLER_ACTIONS = {"assert", "set_fact", "set_stats", "debug", "fail", "meta", "include_tasks",
                      "import_tasks", "include_role", "import_role", "include_vars"}


class HealthPoller:
    """Polls a URL every 10 ms in a thread; reports the longest unhealthy stretch."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self.longest_gap = 0.0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> HealthPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        down_since = None
        with httpx.Client(timeout=0.5) as client:
            while not self._stop.is_set():
                try:
                    healthy = client.get(self._url).status_code == 200
                except httpx.HTTPError:
                    healthy = False
                now = time.monotonic()
                if healthy and down_since is not None:
                    self.longest_gap = max(self.longest_gap, now - down_since)
                    down_since = None
                elif not healthy and down_since is None:
                    down_since = now
                time.sleep(0.01)
        if down_since is not None:
            self.longest_gap = max(self.longest_gap, time.monotonic() - down_since)


def fetch_wheels(packages: list[str]) -> None:
    WHEELS.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(WHEELS), *packages],
                   check=True)


def restart(device: DemoDevice) -> float:
    started = time.monotonic()
    device.stop()
    device.start()
    return time.monotonic() - started


def by_hand(device: DemoDevice, archive: Path, version: str) -> float:
    """What an operator would type: unpack beside, venv, pip, switch, restart."""
    started = time.monotonic()
    target = device.home / "by-hand" / version
    target.parent.mkdir(exist_ok=True)
    with tarfile.open(archive) as tar:
        tar.extractall(target.parent / "unpacked", filter="data")
    (source,) = (target.parent / "unpacked").iterdir()
    source.rename(target)
    subprocess.run([sys.executable, "-m", "venv", str(target / ".venv")], check=True)
    subprocess.run([str(target / ".venv" / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "--no-index", "--find-links", str(WHEELS), "-r", str(target / "requirements.txt")], check=True)
    device.stop()
    link = device.home / "core"
    temporary = link.with_name("core.new")
    temporary.symlink_to(target)
    if link.is_dir() and not link.is_symlink():
        link.rename(device.home / "core.old")
    os.replace(temporary, link)
    device.start()
    return time.monotonic() - started


def update(device: DemoDevice, version: str) -> tuple[float, float, int]:
    with HealthPoller(device.health_url) as poller:
        started = time.monotonic()
        result = asyncio.run(ComponentUpdater(device.settings()).update_component("core", version=version))
        total = time.monotonic() - started
    assert result.success, result.message
    return poller.longest_gap, total, module_executions(device.state / "runs" / result.run_id, result.run_id)


def module_executions(run_dir: Path, run_id: str) -> int:
    count = 0
    for path in (run_dir / "artifacts" / run_id / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        action = (event.get("event_data") or {}).get("task_action") or ""
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and action.rsplit(".", 1)[-1] not in CONTROLLER_ACTIONS:
            count += 1
    return count


def demo() -> tuple[float, int]:
    started = time.monotonic()
    done = subprocess.run([str(Path(sys.executable).with_name("dunebugger-updater")), "demo"],
                          capture_output=True, text=True, check=True)
    return time.monotonic() - started, len(done.stdout.splitlines())


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--packages", default=DEFAULT_PACKAGES)
    parser.add_argument("--no-demo", action="store_true", help="skip timing `dunebugger-updater demo`")
    args = parser.parse_args()
    packages = args.packages.split(",")
    fetch_wheels(packages)

    restarts, hands, downs, totals, modules = [], [], [], [], []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as github:
            extra = f"pipExtraArgs = --no-index --find-links {WHEELS}\n"
            device = DemoDevice(Path(tmp) / "device", github, extra_config=extra)
            device.start()
            restarts.append(restart(device))
            archive = device.publish("1.1.0", requirements=tuple(packages))
            down, total, count = update(device, "1.1.0")
            downs.append(down)
            totals.append(total)
            modules.append(count)
            device.close()

            manual = DemoDevice(Path(tmp) / "manual", github)
            manual.start()
            hands.append(by_hand(manual, archive, "1.1.0"))
            manual.close()
        print(f"round {round_ + 1}: restart {restarts[-1]:.2f} s | update downtime {downs[-1]:.2f} s, "
              f"total {totals[-1]:.1f} s, {modules[-1]} module executions | by hand {hands[-1]:.1f} s", flush=True)

    pairs = [total / hand for total, hand in zip(totals, hands)]
    print(f"\n{len(packages)} requirements from a local wheel directory; medians of {args.rounds} rounds")
    print(f"service restart (baseline)       {median(restarts):6.2f} s")
    print(f"update downtime                  {median(downs):6.2f} s   restart {median(downs) - median(restarts):+.2f} s"
          "   (goal: +0.3 s at most)")
    print(f"by hand: extract, venv, pip, restart  {median(hands):5.1f} s   (baseline)")
    print(f"update core, wall time           {median(totals):6.1f} s   {median(pairs):.2f}x by hand, median of pairs "
          f"({min(pairs):.2f}-{max(pairs):.2f})   (goal: 1.3x at most)")
    print(f"module executions per update     {median(modules):6.0f}     (goal: 12 at most)")
    if not args.no_demo:
        seconds, lines = demo()
        print(f"dunebugger-updater demo          {seconds:6.1f} s   {lines} lines   (goal: 20 s, 60 lines at most)")


if __name__ == "__main__":
    main()
