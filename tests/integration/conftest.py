"""Fixtures of the integration tier."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.demo.fake_github import FakeGitHub


@pytest.fixture
def device(tmp_path: Path, github: FakeGitHub) -> Iterator[DemoDevice]:
    """A sandbox device running core 1.0.0; test modules that need more override it."""
    sandbox = DemoDevice(tmp_path / "device", github)
    sandbox.start()
    yield sandbox
    sandbox.close()
