"""What is particular to updating `core` (a python_app): which asset to download, how
it is verified, and the extra-vars of the core playbooks."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from .config import ComponentSpec, Settings
from .download import DownloadPolicy, download_bytes, download_verified
from .errors import DownloadError
from .installed import previous_release, releases_path, retained_releases
from .manifest import Manifest
from .releases import Release
from .signatures import MAX_SIGNATURE_BYTES, SIGNATURE_SUFFIX, SignatureError, SignaturePolicy
from .statedir import StateDir

UPDATE_STEPS = ("preflight", "stage", "switch", "postflight", "finalize")
ROLLBACK_STEPS = ("core_rollback", "postflight")


@dataclass(frozen=True)
class Artifact:
    name: str
    url: str
    sha256: str
    sha256_source: str  # "manifest checksum" or "release asset digest"
    signature_url: str | None = None  # <name>.sig, fetched only when a signing key is configured


@dataclass(frozen=True)
class Prepared:
    artifact: Artifact
    archive: Path
    signer: str | None = None  # principal whose signature verified (None: signatures not required)


class CoreProcedure:
    update_playbook = "update_core"
    rollback_playbook = "rollback_core"
    update_steps = UPDATE_STEPS
    rollback_steps = ROLLBACK_STEPS

    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._signatures = SignaturePolicy.from_settings(settings)
        self._state = StateDir(settings.state_path)

    def artifact(self, spec: ComponentSpec, release: Release, version_text: str, manifest: Manifest | None) -> Artifact:
        """The archive to install and the sha256 it must have; refuses when none is known."""
        name = spec.asset_pattern.replace("{version}", version_text)
        asset = release.asset(name)
        url = (manifest.artifact_url if manifest and manifest.artifact_url else None) or (asset.url if asset else None)
        if url is None:
            raise DownloadError(f"release {release.tag} has no asset {name!r}")
        signature_url = self._signature_url(release, name)
        if manifest and manifest.checksum:
            return Artifact(name, url, manifest.checksum, "manifest checksum", signature_url)
        if asset and asset.digest and asset.digest.lower().startswith("sha256:"):
            return Artifact(name, url, asset.digest.split(":", 1)[1].lower(), "release asset digest", signature_url)
        raise DownloadError(
            f"no sha256 is known for {name!r}: the release asset has no digest and the manifest no checksum"
        )

    def _signature_url(self, release: Release, name: str) -> str | None:
        if not self._signatures.required:
            return None
        signature = release.asset(name + SIGNATURE_SUFFIX)
        if signature is None:
            raise SignatureError(f"release {release.tag} has no signature {name + SIGNATURE_SUFFIX!r}, "
                                 "and this device requires signed releases (signingPublicKey/allowedSigners)")
        return signature.url

    async def prepare(self, artifact: Artifact) -> Prepared:
        settings = self._settings
        policy = DownloadPolicy.for_api(settings.github_api_url, settings.max_download_mb * 1024 * 1024)
        archive = await download_verified(
            artifact.url,
            artifact.sha256,
            self._state.subdir("downloads") / artifact.name,
            policy,
            token=settings.github_token,
            transport=self._transport,
        )
        if artifact.signature_url is None:
            return Prepared(artifact, archive)
        try:
            signature = await download_bytes(artifact.signature_url, policy, max_bytes=MAX_SIGNATURE_BYTES,
                                             name=artifact.name + SIGNATURE_SUFFIX, token=settings.github_token,
                                             transport=self._transport)
            signer = await asyncio.to_thread(self._signatures.verify, archive, signature, name=artifact.name)
        except DownloadError:
            archive.unlink(missing_ok=True)  # verified bytes, but not from a trusted signer: keep nothing
            raise
        return Prepared(artifact, archive, signer)

    def update_vars(
        self, spec: ComponentSpec, version_text: str, from_version: str | None, prepared: Prepared, manifest: Manifest | None
    ) -> dict[str, Any]:
        """Extra-vars of update_core.yml for this device."""
        return {
            **self.device_vars(spec),
            "core_from_version": from_version or "",
            **self.release_vars(spec, version_text, prepared, manifest),
        }

    def rollback_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        return {**self.device_vars(spec), "core_rollback_version": to_version or ""}

    def missing_rollback_target(self, spec: ComponentSpec) -> str | None:
        """Why a rollback without --to has nowhere to go, in the command line's words
        (None: a previous release is recorded, and the playbook takes it from there)."""
        releases = releases_path(spec)
        if previous_release(releases):
            return None
        kept = retained_releases(releases, self._settings.backup_path)
        return (f"no previous {spec.name} release is recorded; name one with --to V "
                f"({'retained: ' + ', '.join(kept) if kept else 'none is retained in ' + str(releases)})")

    def release_vars(
        self, spec: ComponentSpec, version_text: str, prepared: Prepared, manifest: Manifest | None
    ) -> dict[str, Any]:
        """What is the same on every device: the release, its verified archive, and the
        checks its manifest asks for (a fleet run passes only these)."""
        return {
            "dunebugger_component": spec.name,
            "dunebugger_version": version_text,
            "core_archive": prepared.archive,
            "core_archive_sha256": prepared.artifact.sha256,
            "core_max_extract_mb": self._settings.max_extract_mb,
            **manifest_check_vars(manifest),
        }

    def device_vars(self, spec: ComponentSpec) -> dict[str, Any]:
        """How this device runs the component, from its own configuration."""
        return {
            "dunebugger_component": spec.name,
            "core_install_path": spec.install_path,
            "core_releases_path": releases_path(spec),
            "core_backup_path": self._settings.backup_path,
            "core_backup_keep": self._settings.backups_to_keep,
            "core_service_manager": spec.service_manager,
            "core_service_name": spec.service_name,
            "core_start_command": list(spec.start_command),
            "core_stop_command": list(spec.stop_command),
            "core_status_command": list(spec.status_command),
            "core_health_url": spec.health_url,
            "core_health_timeout_seconds": spec.health_timeout_seconds,
            "core_python": spec.python,
            "core_pip_extra_args": list(spec.pip_extra_args),
        }


def manifest_check_vars(manifest: Manifest | None) -> dict[str, Any]:
    """The pre- and post-checks a release's manifest asks for, as core_* variables."""
    if manifest is None:
        return {}
    checks = manifest.checks
    candidates = {
        "core_min_free_mb": checks.min_free_mb,
        "core_check_service_running_before": checks.require_service_running or None,
        "core_migration_script": manifest.migration_script,
        "core_health_url": checks.health_url,
        "core_health_timeout_seconds": checks.health_timeout,
        "core_health_expected_status": checks.health_expected_status,
        "core_service_active_timeout_seconds": checks.service_active_timeout,
    }
    return {name: value for name, value in candidates.items() if value}

