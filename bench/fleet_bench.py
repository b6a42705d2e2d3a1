"""Fleet rollouts over 1, 4, 8 and 16 SSH hosts: wall time as a ratio to one host
measured in the same run, and the controller's cost per host.

The devices are real SSH hosts (network namespaces with their own sshd and /opt, the
fleet test bed of tests/support/fleet_testbed.py); each runs core 1.0.0 with the `command`
service manager and is updated to 1.1.0 through `FleetUpdater.update`: the release
looked up and verified once on the controller, the versions pass, then update_core.yml
over SSH. Every device is reset to 1.0.0 between runs (not timed).

* Parallelism: one batch of N devices (no canary group, `--batches 100%`, forks = N).
* At scale: one rollout over every host in batches 1,25%,100% (h1 the canary).

Controller cost = CPU time of the controller (this process, and ansible-playbook, its
workers and ssh) during the rollout, per device. The test bed's devices share this
machine's CPUs with the controller, so device-side module time counts against the wall
time here; real devices run their modules on their own CPUs. To show where the time
goes, the bench also reads the whole machine's busy CPU time (/proc/stat): what is not
the controller's is the devices' (sshd, their modules, their services), and busy time
near every CPU for the whole run means the rollout waited on the CPUs, not on SSH.

    .venv/bin/python bench/fleet_bench.py [--repeat 3] [--sizes 1,4,8,16] [--strategy mitogen_linear]

Needs root (namespaces).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# The fleet test bed is test equipment (tests/support); a script finds it through tests/.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from core_update_bench import CONTROLLER_ACTIONS, run_events
from dunebugger_updater.config import FLEET_STRATEGIES, load_settings
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.fleet.batches import Rollout
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater
from support.fleet_testbed import Fleet, free_octet


@dataclass(frozen=True)
class Measured:
    seconds: float
    controller_cpu: float
    batches: tuple[int, ...]
    machine_cpu: float = 0.0  # busy CPU time of the whole machine during the rollout
    tasks: int = 0  # per device, in the update run
    executions: int = 0  # of them, modules run on the device


def controller_cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def machine_cpu() -> float:
    """Busy CPU seconds of the whole machine since boot (every process, every CPU)."""
    with open("/proc/stat") as stat:
        ticks = [int(field) for field in stat.readline().split()[1:]]
    idle, iowait = ticks[3], ticks[4]
    return (sum(ticks[:8]) - idle - iowait) / os.sysconf("SC_CLK_TCK")


def rollout(
    updater: FleetUpdater, runs: Path, inventory: Path, hosts: list[str], batches: tuple[int | str, ...]
) -> Measured:
    target = FleetTarget(inventory, limit=",".join(hosts), forks=len(hosts))
    cpu, busy, started = controller_cpu(), machine_cpu(), time.perf_counter()
    result = asyncio.run(updater.update("core", target, rollout=Rollout(batches=batches)))
    seconds, used, machine = time.perf_counter() - started, controller_cpu() - cpu, machine_cpu() - busy
    if not result.success or len(result.devices) != len(hosts):
        raise SystemExit(f"fleet update of {len(hosts)} device(s) failed: {result.message}")
    tasks, executions = per_device(runs / str(result.run_id) / "artifacts" / str(result.run_id), hosts[0])
    return Measured(seconds, used, tuple(len(batch) for batch in result.plan.batches), machine, tasks, executions)


def per_device(artifacts: Path, host: str) -> tuple[int, int]:
    """Tasks and module executions of one device in the update run, from its events."""
    done = [
        event["event_data"].get("task_action", "").rsplit(".", 1)[-1]
        for event in run_events(artifacts)
        if event.get("event") in ("runner_on_ok", "runner_on_failed") and event["event_data"].get("host") == host
    ]
    return len(done), sum(action not in CONTROLLER_ACTIONS for action in done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1,4,8,16")
    parser.add_argument(
        "--strategy", choices=FLEET_STRATEGIES, default="linear", help="fleetStrategy of the controller"
    )
    args = parser.parse_args()
    sizes = sorted({int(size) for size in args.sizes.split(",")} | {1})
    cpus = os.cpu_count() or 1

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
        config.write_text(
            f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {Path(work) / 'state'}\n"
            f"fleetStrategy = {args.strategy}\n"
        )
        updater = FleetUpdater(load_settings(config, environ={}))
        artifacts = Path(work) / "state" / "fleet-runs"
        one_batch = fleet.write(
            Path(work) / "one-batch.yml",
            {"devices": {"hosts": {host.name: fleet.host_vars(host) for host in fleet.hosts}}},
        )
        print(
            f"fleetStrategy {args.strategy}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs", flush=True
        )

        medians: dict[int, Measured] = {}
        for size in sizes:
            runs = []
            for _ in range(args.repeat):
                fleet.reset()
                hosts = [host.name for host in fleet.hosts[:size]]
                runs.append(rollout(updater, artifacts, one_batch, hosts, ("100%",)))
            medians[size] = Measured(
                statistics.median(run.seconds for run in runs),
                statistics.median(run.controller_cpu for run in runs),
                (size,),
                statistics.median(run.machine_cpu for run in runs),
            )
            median = medians[size]
            print(
                f"{size:3d} device(s), one batch: median {median.seconds:5.1f} s "
                f"({median.seconds / medians[1].seconds:.2f}x one device; runs "
                f"{', '.join(f'{run.seconds:.1f}' for run in runs)}); controller CPU "
                f"{median.controller_cpu / size:.2f} s per device, devices' CPU "
                f"{(median.machine_cpu - median.controller_cpu) / size:.2f} s per device; CPUs busy "
                f"{median.machine_cpu / (median.seconds * cpus):.0%} of the run",
                flush=True,
            )

        fleet.reset()
        everyone = [host.name for host in fleet.hosts]
        staged = rollout(updater, artifacts, fleet.inventory, everyone, (1, "25%", "100%"))
        print(
            f"\n{len(everyone)} devices in batches 1,25%,100% (planned {list(staged.batches)}): "
            f"{staged.seconds:.1f} s, "
            f"controller CPU {staged.controller_cpu / len(everyone):.2f} s per device; per device "
            f"{staged.tasks} tasks, {staged.executions} of them module executions on it; "
            f"load average now {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
