"""Fixtures of the integration tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dunebugger_updater.demo.fake_github import FakeGitHub
from support.device import SandboxDevice


@pytest.fixture
def device(tmp_path: Path, github: FakeGitHub) -> Iterator[SandboxDevice]:
    """A sandbox device running core 1.0.0; test modules that need more override it."""
    sandbox = SandboxDevice(tmp_path / "device", github)
    sandbox.start()
    yield sandbox
    sandbox.close()
