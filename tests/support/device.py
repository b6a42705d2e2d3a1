"""The demo's sandbox device with what tests ask of it besides: a fingerprint of its
files, the stand-in app's process, and releases published from any archive."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dunebugger_updater.demo import CORE_REPO, DemoDevice
from support.fingerprint import tree_fingerprint
from support.hostile_github import HostileGitHub


class SandboxDevice(DemoDevice):
    def publish_archive(self, version: str, archive: Path, **fields: Any) -> None:
        """Publish `archive`, whatever it holds, as the asset of tag v<version>."""
        name = f"dunebugger-{version}.tar.gz"
        self.github.add_release(CORE_REPO, f"v{version}", assets={name: archive.read_bytes()}, **fields)

    def fingerprint(self) -> str:
        """Hash of the device's files, the updater's own state and the test artifacts aside."""
        return tree_fingerprint(self.home, skip_top=("state", "artifacts"))

    def app_pid(self) -> str:
        return (self.home / "app.pid").read_text().strip()


@contextmanager
def running_sandbox(home: Path) -> Iterator[SandboxDevice]:
    """A sandbox device at `home`, started, answered by its own loopback GitHub."""
    with HostileGitHub() as github:
        device = SandboxDevice(home, github)
        device.start()
        try:
            yield device
        finally:
            device.close()
