"""`dunebugger-updater demo`: the whole update story, offline, in a temporary directory.

It starts a loopback release server holding generated releases of a small sample app,
lays out a sandbox device (core run by the `command` service manager), and then runs,
through the real playbooks: a check, a dry run, an update to a good release, and an
update to an unhealthy release that is rolled back. Everything is removed at the end,
unless something went wrong: then the sandbox stays (its path is printed) so that what
the messages point at (playbook artifacts under state/runs) can still be read.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any, TextIO

from .. import messages, tables
from ..errors import ConfigError, os_reason
from ..updater import ComponentUpdater
from .device import DemoDevice
from .fake_github import FakeGitHub

Scenario = Callable[[Path, Callable[[str], None]], bool]  # (sandbox home, printer) -> all went well


def run_demo(
    out: TextIO = sys.stdout, *, scenario: Scenario | None = None, json_output: bool = False, verbose: bool = False
) -> int:
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
        raise ConfigError(
            f"cannot create the demo's sandbox in {where}: {os_reason(exc)}: set TMPDIR to a directory you may write"
        ) from None


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
