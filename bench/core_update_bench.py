"""Downtime and total time of a core update: the staged procedure (this project's
playbook: install beside the running release, then switch) against the seed's naive
order (stop, extract, pip install, start), with a requirements file of real packages
installed from a local wheel directory. Health is polled every 10 ms; downtime is the
longest stretch without a healthy answer. The service's own restart time, measured in
the same run, is the baseline.

    .venv/bin/python bench/core_update_bench.py [--repeat 3] [--packages requests,...]

The wheels are fetched once with `pip download` into bench/.wheels (PyPI only).
"""

from __future__ import annotations

import argparse
import asyncio
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
DEFAULT_PACKAGES = "requests,urllib3,idna,certifi,charset-normalizer,six,packaging"


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


def restart_time(device: DemoDevice) -> float:
    started = time.monotonic()
    device.stop()
    device.start()
    return time.monotonic() - started


def staged(device: DemoDevice, version: str) -> tuple[float, float]:
    with HealthPoller(device.health_url) as poller:
        started = time.monotonic()
        result = asyncio.run(ComponentUpdater(device.settings()).update_component("core", version=version))
        total = time.monotonic() - started
    assert result.success, result.message
    return poller.longest_gap, total


def naive(device: DemoDevice, archive: Path, requirements_from: str) -> tuple[float, float]:
    """The seed's order: stop, extract over the installation, pip install, start."""
    core = device.home / "core"
    with HealthPoller(device.health_url) as poller:
        started = time.monotonic()
        device.stop()
        with tarfile.open(archive) as tar:
            tar.extractall(device.home / "naive-extract", filter="data")
        (source,) = (device.home / "naive-extract").iterdir()
        subprocess.run(["cp", "-a", f"{source}/.", str(core)], check=True)
        subprocess.run([str(core / ".venv" / "bin" / "python"), "-m", "ensurepip"], capture_output=True, check=True)
        subprocess.run([str(core / ".venv" / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index",
                        "--find-links", requirements_from, "-r", str(core / "requirements.txt")], check=True)
        device.start()
        total = time.monotonic() - started
    return poller.longest_gap, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--packages", default=DEFAULT_PACKAGES)
    args = parser.parse_args()
    packages = args.packages.split(",")
    fetch_wheels(packages)

    restarts, staged_runs, naive_runs = [], [], []
    for round_ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp, FakeGitHub() as github:
            extra = f"pipExtraArgs = --no-index --find-links {WHEELS}\n"
            device = DemoDevice(Path(tmp) / "staged", github, extra_config=extra)
            device.start()
            restarts.append(restart_time(device))
            device.publish("1.1.0", requirements=tuple(packages))
            staged_runs.append(staged(device, "1.1.0"))
            device.close()

            naive_device = DemoDevice(Path(tmp) / "naive", github)
            naive_device.start()
            archive = releases.build_release(Path(tmp) / "naive-artifacts", "1.1.0", requirements=tuple(packages))
            naive_runs.append(naive(naive_device, archive, str(WHEELS)))
            naive_device.close()
        print(f"round {round_ + 1}: restart {restarts[-1]:.2f} s, staged downtime {staged_runs[-1][0]:.2f} s "
              f"(total {staged_runs[-1][1]:.1f} s), naive downtime {naive_runs[-1][0]:.2f} s "
              f"(total {naive_runs[-1][1]:.1f} s)", flush=True)

    restart = statistics.median(restarts)
    staged_down = statistics.median(run[0] for run in staged_runs)
    naive_down = statistics.median(run[0] for run in naive_runs)
    print(f"\nrequirements: {len(packages)} packages from a local wheel directory; medians of {args.repeat}")
    print(f"service restart (baseline)   {restart:6.2f} s")
    print(f"staged update downtime       {staged_down:6.2f} s   restart + {staged_down - restart:+.2f} s "
          f"(target: restart + 0.5 s at most)")
    print(f"naive update downtime        {naive_down:6.2f} s   {naive_down / staged_down:.1f}x the staged downtime")
    print(f"staged update total          {statistics.median(run[1] for run in staged_runs):6.1f} s")
    print(f"naive update total           {statistics.median(run[1] for run in naive_runs):6.1f} s")


if __name__ == "__main__":
    main()
