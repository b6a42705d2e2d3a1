"""The security battery: hostile releases, manifests, archives and API answers.

Most attacks are dry runs (download and verification happen, the device is never
touched) against one sandbox device per module; the extraction and migration attacks
run the real playbooks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from support.device import SandboxDevice, running_sandbox


@pytest.fixture(scope="module")
def shared_device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxDevice]:
    with running_sandbox(tmp_path_factory.mktemp("security") / "device") as device:
        yield device


@pytest.fixture
def device(shared_device: SandboxDevice, clean_env: None) -> SandboxDevice:
    """The shared device with an empty release server (its history keeps growing)."""
    shared_device.github.reset()
    if shared_device.health() is None:  # a previous test must not leave it stopped
        shared_device.start()
    return shared_device


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    """A file that only an evaluated template payload would create."""
    return tmp_path / "PWNED"
