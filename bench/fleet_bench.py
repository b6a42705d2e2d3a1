"""Wall time of a fleet update for 1, 4 and 8 devices, with forks = devices.

The devices are real SSH hosts (network namespaces with their own sshd and /opt, the
fleet test bed of tests/fleet/fleet_testbed.py); each runs core 1.0.0 with the `command`
service manager and is updated to 1.1.0 through `FleetUpdater.update` — release lookup
and verified download on the controller, the versions pass, then update_core.yml over
SSH in one batch (`--batches 100%`: the parallelism, not the canary's extra round, is
measured here). Every device is reset to 1.0.0 between runs (not timed).

    .venv/bin/python bench/fleet_bench.py [--repeat 3] [--sizes 1,4,8]

Needs root (namespaces). Prints the median wall time per size, the per-device cost
(median / devices) and the ratio of the largest size to one device.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "fleet"))

from fleet_testbed import Fleet, free_octet

from dunebugger_updater.config import load_settings
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater, Rollout


def one_update(updater: FleetUpdater, fleet: Fleet, size: int) -> float:
    hosts = ",".join(host.name for host in fleet.hosts[:size])
    target = FleetTarget(fleet.inventory, limit=hosts, forks=size)
    started = time.perf_counter()
    result = asyncio.run(updater.update("core", target, rollout=Rollout(batches=("100%",))))
    elapsed = time.perf_counter() - started
    if not result.success or len(result.devices) != size:
        raise SystemExit(f"fleet update of {size} device(s) failed: {result.message}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1,4,8")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]

    with (
        tempfile.TemporaryDirectory(prefix="fleet-bench-") as work,
        FakeGitHub() as github,
        Fleet(Path(work) / "hosts", count=max(sizes), octet=free_octet(8), tag=f"b{os.getpid() % 10000}") as fleet,
    ):
        archive = releases.build_release(Path(work) / "artifacts", "1.1.0")
        github.add_release(
            "marco-svitol/dunebugger", "v1.1.0", assets={"dunebugger-1.1.0.tar.gz": archive.read_bytes()}
        )
        config = Path(work) / "controller.conf"
        config.write_text(f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {Path(work) / 'state'}\n")
        updater = FleetUpdater(load_settings(config, environ={}))

        medians = {}
        for size in sizes:
            times = []
            for _ in range(args.repeat):
                fleet.reset()
                times.append(one_update(updater, fleet, size))
            medians[size] = statistics.median(times)
            print(
                f"{size} device(s), forks {size}: median {medians[size]:.1f} s "
                f"(runs: {', '.join(f'{t:.1f}' for t in times)}); per device {medians[size] / size:.2f} s",
                flush=True,
            )

        smallest, largest = min(sizes), max(sizes)
        ratio = medians[largest] / medians[smallest]
        print(
            f"\n{largest} devices / {smallest} device: {ratio:.2f}x the wall time "
            f"(serial would be {largest / smallest:.0f}x); load average now {os.getloadavg()[0]:.1f} "
            f"on {os.cpu_count()} CPUs"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
