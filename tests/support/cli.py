"""The `dunebugger-updater` command as an operator runs it: a child process with its
config, an environment of the test's choosing and a time limit.

    done = run_cli("update", "core", "--dry-run", config=device.config)
    status, message = run_cli_json("history", config=device.config)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The machine's own settings that would otherwise reach the command under test.
MACHINE_SETTINGS = ("GITHUB_TOKEN", "DUNEBUGGER_CONFIG")


def cli_argv(*args: str, config: Path | None = None) -> list[str]:
    """The command line, `--config CONFIG` first when there is one."""
    prefix = ["--config", str(config)] if config is not None else []
    return [sys.executable, "-m", "dunebugger_updater.cli", *prefix, *args]


def cli_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without UPDATER_* and MACHINE_SETTINGS, `env` on top."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_") and k not in MACHINE_SETTINGS}
    return {**clean, **(env or {})}


def run_cli(
    *args: str, config: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run the command to its end: its exit status, stdout and stderr."""
    return subprocess.run(
        cli_argv(*args, config=config),
        capture_output=True,
        text=True,
        env=cli_environment(env),
        timeout=timeout,
        check=False,
    )


def run_cli_json(
    *args: str, config: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 300
) -> tuple[int, dict[str, Any]]:
    """Run the command with `--json`: its exit status and the message it printed."""
    done = run_cli(*args, "--json", config=config, env=env, timeout=timeout)
    return done.returncode, message_of(done)


def start_cli(
    *args: str, config: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """The command in the background, its output piped: read it with communicate()."""
    return subprocess.Popen(
        cli_argv(*args, config=config),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_environment(env),
    )


def message_of(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The JSON message on stdout; a failure showing what was printed instead."""
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise AssertionError(f"no JSON on stdout (exit {done.returncode}):\n{done.stdout}\n{done.stderr}") from None
