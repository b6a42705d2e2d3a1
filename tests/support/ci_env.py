"""The env file ci/docker-up.sh writes: where the test bed's engine, registry, compose
and images are (`export KEY=VALUE` lines)."""

from __future__ import annotations

import os
from pathlib import Path

ENV_FILE = Path(os.environ.get("DUNEBUGGER_CI_ENV", "/var/tmp/dunebugger-ci/env.sh"))


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            values[key.strip()] = value.strip()
    return values
