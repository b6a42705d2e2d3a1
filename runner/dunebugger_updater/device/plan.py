"""What an update is about to install, and the interface every kind of component offers
the operations that install it (core: a python_app; scheduler, remote: containers)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..config import ComponentSpec, Settings
from ..errors import PreflightError
from ..release.manifest import DeviceNames, Manifest, fetch_manifest
from ..release.releases import Release, ReleaseSource


@dataclass(frozen=True)
class Plan:
    """A release resolved for an update: of one device (`from_version` is what it runs)
    or of a whole fleet (`from_version` None: each device reports its own)."""

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

    async def prepare_release(self, plan: Plan) -> PreparedUpdate:
        """Download (or, for a release already on this device, copy) and verify what must
        be (a refusal raises DownloadError or ManifestError); the extra-vars and details
        that are the same on every device (what a fleet run passes: each device's own
        settings come from the inventory)."""

    async def prepare_update(self, plan: Plan) -> PreparedUpdate:
        """`prepare_release` with this device's settings added: the playbook's extra-vars."""

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


async def resolve_plan(
    source: ReleaseSource,
    settings: Settings,
    procedure: Procedure,
    release: Release,
    spec: ComponentSpec,
    *,
    from_version: str | None,
    device: DeviceNames,
) -> Plan:
    """The plan to install `release`: its manifest judged (for `device`), the checks after
    the switch known to fit into a run, the version the device will report."""
    signed = procedure.requires_signed_manifest
    manifest, note = await fetch_manifest(source, spec, release, device=device, signed=signed)
    check_waits_fit(settings, procedure, spec, manifest)
    return Plan(spec, from_version, release, procedure.target_version(release, manifest), manifest, note)


def check_waits_fit(settings: Settings, procedure: Procedure, spec: ComponentSpec, manifest: Manifest | None) -> None:
    """A run whose checks after the switch could outlast the run's deadline would be
    stopped half-verified: refuse it before anything changes."""
    waits = procedure.post_switch_waits(spec, manifest)
    total = sum(seconds for _, seconds in waits)
    limit = settings.playbook_timeout_minutes * 60
    if total > limit:
        parts = " + ".join(f"{name} {seconds:g} s" for name, seconds in waits)
        raise PreflightError(
            f"the checks after the switch may wait {total:g} s ({parts}), longer than a run may take "
            f"(playbookTimeoutMinutes = {settings.playbook_timeout_minutes:g}, {limit:g} s): shorten "
            "those checks or raise playbookTimeoutMinutes"
        )
