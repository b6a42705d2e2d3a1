"""What an update is about to install, and the interface every kind of component offers
the operations that install it (core: a python_app; scheduler, remote: containers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import ComponentSpec
from ..release.manifest import Manifest
from ..release.releases import Release


@dataclass(frozen=True)
class Plan:
    spec: ComponentSpec
    from_version: str | None
    release: Release
    version_text: str  # the version as the release names it (tag without "v", or an image tag)
    manifest: Manifest | None
    manifest_note: str


@dataclass(frozen=True)
class PreparedUpdate:
    """Everything a run needs, gathered before the device is touched."""

    extra_vars: dict[str, Any]
    details: dict[str, Any]  # what a dry run reports: what would be installed, and how
    summary: str  # the same in words: "dunebugger-1.2.0.tar.gz downloaded and verified (...)"
    # Work on the device that must precede the playbook (loading an image archive into
    # the engine); run under the device lock, never in a dry run.
    stage: Callable[[], Awaitable[None]] | None = None


class Procedure(Protocol):
    """How one kind of component is updated and rolled back."""

    update_playbook: str
    rollback_playbook: str
    update_steps: tuple[str, ...]
    rollback_steps: tuple[str, ...]

    @property
    def requires_signed_manifest(self) -> bool:
        """Whether a release needs a valid manifest, signed (signatures are required)."""

    def target_version(self, release: Release, manifest: Manifest | None) -> str:
        """The version text the release installs (what the device will report)."""

    async def prepare_update(self, plan: Plan) -> PreparedUpdate:
        """Download (or, for a release already on this device, copy) and verify what must
        be (a refusal raises DownloadError or ManifestError), and the playbook's extra-vars."""

    def rollback_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        """The rollback playbook's extra-vars."""

    def rollback_target_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        """The part of them that is the same on every device: what a fleet rollback passes
        (each device's settings come from the inventory)."""

    def missing_rollback_target(self, spec: ComponentSpec) -> str | None:
        """Why a rollback without --to has nowhere to go, or None."""

    def unknown_rollback_target(self, spec: ComponentSpec, to_version: str) -> str | None:
        """Why a rollback cannot go to `to_version` (this device keeps nothing of it, and
        which versions it keeps), or None."""

    def post_switch_waits(self, spec: ComponentSpec, manifest: Manifest | None) -> list[tuple[str, float]]:
        """The longest waits after the switch, each named as the setting that sets it."""
