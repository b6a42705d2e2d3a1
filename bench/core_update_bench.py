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

    .venv/bin/python bench/core_update_bench.py [--rounds 3] [--packages requests,...] [--no-uv]

The update is timed twice per round: with pip installing the requirements from outside
the release venv, and with uv (when on PATH the playbook prefers it; the bench fetches
the uv wheel from PyPI into bench/.tools once). Prints every round, then medians and the
ratios of medians and of pairs. The wheels are fetched once with `pip download` into
bench/.wheels (PyPI only).
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
import zipfile
from pathlib import Path

import httpx

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.demo.fake_github import FakeGitHub

WHEELS = Path(__file__).with_name(".wheels")
TOOLS = Path(__file__).with_name(".tools")  # uv, for the runs that install with it
DEFAULT_PACKAGES = "requests,urllib3,idna,certifi,charset-normalizer,six"
# Actions that Ansible runs on the controller: they cost a task, not a module execution.
CONTROLLER_ACTIONS = {
    "assert",
    "set_fact",
    "set_stats",
    "debug",
    "fail",
    "meta",
    "include_tasks",
    "import_tasks",
    "include_role",
    "import_role",
    "include_vars",
    "validate_argument_spec",
}


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
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "-d", str(WHEELS), *packages], check=True
    )


def fetch_uv() -> Path:
    """The uv binary from its PyPI wheel (the wheel carries it as a data script)."""
    binary = TOOLS / "uv"
    if not binary.exists():
        TOOLS.mkdir(exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "-d", str(TOOLS), "uv"],
            check=True,
        )
        wheel = next(TOOLS.glob("uv-*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".data/scripts/uv"))
            binary.write_bytes(archive.read(name))
        binary.chmod(0o755)
    return binary


class PathWith:
    """PATH with one more directory in front while the block runs (what children get)."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._saved = os.environ.get("PATH", "")

    def __enter__(self) -> None:
        if self._directory:
            os.environ["PATH"] = f"{self._directory}{os.pathsep}{self._saved}"

    def __exit__(self, *exc: object) -> None:
        os.environ["PATH"] = self._saved


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
    subprocess.run(
        [
            str(target / ".venv" / "bin" / "pip"),
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-index",
            "--find-links",
            str(WHEELS),
            "-r",
            str(target / "requirements.txt"),
        ],
        check=True,
    )
    device.stop()
    link = device.home / "core"
    temporary = link.with_name("core.new")
    temporary.symlink_to(target)
    if link.is_dir() and not link.is_symlink():
        link.rename(device.home / "core.old")
    os.replace(temporary, link)
    device.start()
    return time.monotonic() - started


def update(device: DemoDevice, version: str) -> tuple[float, float, int, str]:
    """Downtime, wall time, module executions, and who installed the requirements."""
    with HealthPoller(device.health_url) as poller:
        started = time.monotonic()
        result = asyncio.run(ComponentUpdater(device.settings()).update_component("core", version=version))
        total = time.monotonic() - started
    assert result.success, result.message
    events = run_events(device.state / "runs" / result.run_id / "artifacts" / result.run_id)
    executions = [
        event
        for event in events
        if event.get("event") in ("runner_on_ok", "runner_on_failed")
        and event["event_data"].get("task_action", "").rsplit(".", 1)[-1] not in CONTROLLER_ACTIONS
    ]
    installer = next(
        (
            event["event_data"]["res"].get("installer")
            for event in executions
            if event["event_data"].get("task_action") == "core_stage"
        ),
        "?",
    )
    return poller.longest_gap, total, len(executions), installer


def run_events(artifacts: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in (artifacts / "job_events").glob("*.json")]


def demo() -> tuple[float, int]:
    started = time.monotonic()
    done = subprocess.run(
        [str(Path(sys.executable).with_name("dunebugger-updater")), "demo"], capture_output=True, text=True, check=True
    )
    return time.monotonic() - started, len(done.stdout.splitlines())


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--packages", default=DEFAULT_PACKAGES)
    parser.add_argument("--no-uv", action="store_true", help="time the update with pip only")
    parser.add_argument("--no-demo", action="store_true", help="skip timing `dunebugger-updater demo`")
    args = parser.parse_args()
    packages = args.packages.split(",")
    fetch_wheels(packages)
    variants = {"pip": None} if args.no_uv else {"pip": None, "uv": fetch_uv().parent}

    restarts, hands = [], []
    runs: dict[str, list[tuple[float, float, int, str]]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as github:
            archive = None
            for name, tools in variants.items():
                extra = f"pipExtraArgs = --no-index --find-links {WHEELS}\n"
                device = DemoDevice(Path(tmp) / name, github, extra_config=extra)
                device.start()
                if name == "pip":
                    restarts.append(restart(device))
                archive = archive or device.publish("1.1.0", requirements=tuple(packages))
                with PathWith(tools):
                    runs[name].append(update(device, "1.1.0"))
                device.close()

            manual = DemoDevice(Path(tmp) / "manual", github)
            manual.start()
            hands.append(by_hand(manual, archive, "1.1.0"))
            manual.close()
        line = " | ".join(
            f"{name}: downtime {run[-1][0]:.2f} s, total {run[-1][1]:.1f} s, {run[-1][2]} modules"
            for name, run in runs.items()
        )
        print(f"round {round_ + 1}: restart {restarts[-1]:.2f} s | by hand {hands[-1]:.1f} s | {line}", flush=True)

    print(f"\n{len(packages)} requirements from a local wheel directory; medians of {args.rounds} rounds")
    print(f"service restart (baseline)            {median(restarts):6.2f} s")
    print(f"by hand: extract, venv, pip, restart  {median(hands):6.1f} s   (baseline)")
    for run in runs.values():
        downs, totals = [r[0] for r in run], [r[1] for r in run]
        pairs = [total / hand for total, hand in zip(totals, hands, strict=True)]
        print(f"update core, requirements by {run[0][3]:8s}")
        print(
            f"  downtime                            {median(downs):6.2f} s   restart "
            f"{median(downs) - median(restarts):+.2f} s   (goal: +0.3 s at most)"
        )
        print(
            f"  wall time                           {median(totals):6.1f} s   {median(pairs):.2f}x by hand, "
            f"median of pairs ({min(pairs):.2f}-{max(pairs):.2f})   (goal: 1.3x at most)"
        )
        print(f"  module executions                   {median([r[2] for r in run]):6.0f}     (goal: 12 at most)")
    if not args.no_demo:
        seconds, lines = demo()
        print(
            f"dunebugger-updater demo               {seconds:6.1f} s   {lines} lines   (goal: 20 s, 60 lines at most)"
        )


if __name__ == "__main__":
    main()
