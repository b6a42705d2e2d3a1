"""Footprint and latency of `dunebugger-updater serve`.

Starts the real command (a separate process, as systemd would) on a sandbox device
against the loopback GitHub-like server, then prints:

- resident memory (VmRSS, and VmHWM, the peak) once it listens and sits idle, and
  again after a forced update check over the WebSocket (target: under 40 MB);
- the round-trip latency of `updater.get_versions` over one connection (median, p95),
  paced below the per-connection rate limit;
- which heavy modules importing the service pulls in (a separate probe process).

    .venv/bin/python bench/serve_bench.py [--requests 200] [--hide rich,pygments]

`--hide` makes those modules unimportable in the serve process, to see the footprint
of a device install: the test extras (molecule) bring rich and pygments, which httpx
imports at start-up whenever they are installed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

from dunebugger_updater.demo import DemoDevice, free_port
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.service.server import RATE_PER_SECOND

PACE_SECONDS = 1 / (RATE_PER_SECOND * 0.8)


def memory_mb(pid: int) -> dict[str, float]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


async def wait_listening(port: int, timeout: float = 30) -> float:
    started = time.monotonic()
    async with asyncio.timeout(timeout):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return time.monotonic() - started
            except OSError:
                await asyncio.sleep(0.02)


async def ask(ws, subject: str, body: dict, answer: str) -> None:
    await ws.send(json.dumps({"subject": subject, "body": body}))
    while json.loads(await ws.recv())["subject"] != answer:
        pass


def serve_command(config: Path, port: int, hide: list[str]) -> list[str]:
    args = ["--config", str(config), "serve", "--port", str(port)]
    if not hide:
        return [sys.executable, "-m", "dunebugger_updater.cli", *args]
    launcher = (
        f"import sys; sys.modules.update(dict.fromkeys({hide!r})); "
        f"from dunebugger_updater.cli import main; sys.exit(main({args!r}))"
    )
    return [sys.executable, "-c", launcher]


async def measure(config: Path, requests: int, hide: list[str]) -> None:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")}
    process = subprocess.Popen(serve_command(config, port, hide), stderr=subprocess.DEVNULL, env=environ)
    try:
        ready = await wait_listening(port)
        await asyncio.sleep(1.0)  # let the start-up recovery pass settle
        idle = memory_mb(process.pid)
        url = f"ws://127.0.0.1:{port}/ws"
        async with connect(url) as ws:
            await ask(ws, "updater.check_updates", {"force": True}, "update_check_result")
            await asyncio.sleep(0.5)
            checked = memory_mb(process.pid)
            latencies = []
            for _ in range(requests):
                started = time.perf_counter()
                await ask(ws, "updater.get_versions", {}, "versions_result")
                latencies.append((time.perf_counter() - started) * 1000)
                await asyncio.sleep(PACE_SECONDS)  # stay under the per-connection rate limit
            after = memory_mb(process.pid)
        latencies.sort()
        print(f"serve listening after       {ready:8.2f} s")
        print(f"RSS idle after start        {idle['VmRSS']:8.1f} MB")
        print(f"RSS after a forced check    {checked['VmRSS']:8.1f} MB")
        print(f"RSS after {requests} get_versions {after['VmRSS']:6.1f} MB (peak {after['VmHWM']:.1f} MB)")
        print(
            f"get_versions round trip     {statistics.median(latencies):8.2f} ms median, "
            f"{latencies[int(len(latencies) * 0.95) - 1]:.2f} ms p95 ({requests} requests, one connection)"
        )
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--hide", default="", help="comma-separated modules the serve process must not import")
    args = parser.parse_args()
    hide = [name for name in args.hide.split(",") if name]
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as home, FakeGitHub() as github:
        device = DemoDevice(Path(home), github)  # the stand-in app need not run for reads
        device.publish("1.1.0")
        for repo in ("marco-svitol/dunebugger-scheduler", "marco-svitol/dunebugger-remote"):
            github.add_release(repo, "v1.0.0")
        if hide:
            print(f"serve process without: {', '.join(hide)}")
        asyncio.run(measure(device.config, args.requests, hide))
        heavy = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, dunebugger_updater.cli, dunebugger_updater.service.server; "
                "print(' '.join(sorted(m for m in ('ansible', 'ansible_runner', 'apprise', 'jsonschema', 'rich', "
                "'click', 'yaml', 'httpx') if m in sys.modules)))",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        print(f"heavy modules at import     {heavy or '(none)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
