"""Fixtures shared by every test tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dunebugger_updater.demo.fake_github import FakeGitHub


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No UPDATER_* or GITHUB_TOKEN from the machine running the tests."""
    import os

    for name in list(os.environ):
        if name.startswith("UPDATER_") or name in ("GITHUB_TOKEN", "DUNEBUGGER_CONFIG"):
            monkeypatch.delenv(name)
