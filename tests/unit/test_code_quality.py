"""The project's own checks, run as a maintainer runs them: ruff, mypy, yamllint and
ansible-lint (production profile) with the configuration in pyproject.toml, .yamllint
and .ansible-lint. A finding fails the suite, with the tool's own words."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

CHECKS = {
    "ruff check": [str(BIN / "ruff"), "check", "runner", "tests", "bench"],
    "ruff format": [str(BIN / "ruff"), "format", "--check", "runner", "bench"],
    "mypy": [str(BIN / "mypy")],
    "yamllint": [str(BIN / "yamllint"), "--strict", "."],
    "ansible-lint": [str(BIN / "ansible-lint"), "--nocolor", "-q", "playbooks", "roles", "molecule", "inventory"],
}


@pytest.mark.parametrize("name", CHECKS)
def test_the_code_passes(name):
    done = subprocess.run(CHECKS[name], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{name} found problems:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
