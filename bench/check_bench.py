"""How long an update check takes, and how long the command takes to start.

Against the loopback GitHub-like server with added latency per request, it times:
one release lookup (the baseline), a check of the 3 built-in components, and a check
of 30 components; then the start-up of `dunebugger-updater versions` against a bare
`python -c pass`. Prints medians and ratios; run it twice to compare machines' noise.

    .venv/bin/python bench/check_bench.py [--latency 0.2] [--repeat 7]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.release.releases import ReleaseClient

EXTRA_COMPONENTS = 27


def write_config(home: Path, api_url: str, extra_components: int) -> Path:
    lines = [
        "[Updater]",
        f"githubApiUrl = {api_url}",
        f"statePath = {home / 'state'}",
        f"coreInstallPath = {home / 'core'}",
        f"dockerComposePath = {home / 'compose.yml'}",
    ]
    for index in range(extra_components):
        lines += [
            f"[Component:c{index}]",
            "type = container",
            f"repo = acme/c{index}",
            f"image = localhost:5000/acme/c{index}",
        ]
    path = home / f"bench-{extra_components}.conf"
    path.write_text("\n".join(lines) + "\n")
    return path


def publish(github: FakeGitHub) -> None:
    for repo in ["marco-svitol/dunebugger", "marco-svitol/dunebugger-scheduler", "marco-svitol/dunebugger-remote"]:
        github.add_release(repo, "v1.1.0", body="notes")
    for index in range(EXTRA_COMPONENTS):
        github.add_release(f"acme/c{index}", "v2.0.0")


async def one_lookup(api_url: str) -> float:
    started = time.perf_counter()
    async with ReleaseClient(api_url) as client:
        await client.latest("core", "marco-svitol/dunebugger")
    return time.perf_counter() - started


async def full_check(config: Path) -> float:
    updater = ComponentUpdater(load_settings(config, environ={}))
    started = time.perf_counter()
    await updater.check_updates(force=True)
    return time.perf_counter() - started


def start_up(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - started


def median_of(repeat: int, measure) -> float:
    return statistics.median(measure() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every API answer")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeGitHub(latency=args.latency) as github:
        home = Path(tmp)
        publish(github)
        three = write_config(home, github.url, 0)
        thirty = write_config(home, github.url, EXTRA_COMPONENTS)
        # The state dir is shared: forced checks still ask GitHub every time (304s cost
        # the same round trip), so each measurement is one full round of lookups.
        baseline = median_of(args.repeat, lambda: asyncio.run(one_lookup(github.url)))
        check3 = median_of(args.repeat, lambda: asyncio.run(full_check(three)))
        check30 = median_of(args.repeat, lambda: asyncio.run(full_check(thirty)))

        python = median_of(args.repeat, lambda: start_up([sys.executable, "-c", "pass"]))
        command = [sys.executable, "-m", "dunebugger_updater.cli", "--config", str(three), "versions"]
        versions = median_of(args.repeat, lambda: start_up(command))

    print(f"latency per API answer     {args.latency * 1000:8.0f} ms   (repeat {args.repeat}, medians)")
    print(f"one release lookup         {baseline * 1000:8.1f} ms   1.00x")
    print(f"check,  3 components       {check3 * 1000:8.1f} ms   {check3 / baseline:.2f}x one lookup")
    print(
        f"check, 30 components       {check30 * 1000:8.1f} ms   {check30 / baseline:.2f}x one lookup (target <= 1.5x)"
    )
    print(f"start-up: python -c pass   {python * 1000:8.1f} ms")
    print(f"start-up: versions         {versions * 1000:8.1f} ms   {versions / python:.2f}x bare python")


if __name__ == "__main__":
    main()
