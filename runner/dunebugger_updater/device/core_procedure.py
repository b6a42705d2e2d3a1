"""What is particular to updating `core` (a python_app): which asset to download (or
which file on this device to copy), how it is verified, and the extra-vars of the core
playbooks."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx

from ..config import ComponentSpec, Settings
from ..errors import DownloadError, ManifestRefused, SignatureError
from ..release.download import DownloadPolicy, download_bytes, download_verified
from ..release.image_archive import tar_problem
from ..release.local import Checksum, LocalFiles
from ..release.manifest import Manifest
from ..release.release_archive import NotAReleaseArchive, read_release_archive
from ..release.releases import MANIFEST_FILE, Release
from ..release.signatures import MAX_SIGNATURE_BYTES, SIGNATURE_SUFFIX, SignaturePolicy

# The device's own archive reader (shipped with the roles): the same caps, checked here
# before anything is sent to a device.
from ..roles.core_common.module_utils.dunebugger_archive import ArchiveRefused, capped_members, open_archive
from ..statedir import StateDir
from ..versions import without_v
from .installed import installed_version, previous_release, releases_path, retained_releases
from .plan import Plan, PreparedUpdate

UPDATE_STEPS: tuple[str, ...] = ("preflight", "stage", "switch", "postflight", "finalize")
ROLLBACK_STEPS: tuple[str, ...] = ("rollback", "postflight")
SERVICE_ACTIVE_TIMEOUT_SECONDS = 30  # how long a started service may take to report active
SETTLE_SECONDS = 0.5  # postflight_settle_seconds: still active this long after it was


@dataclass(frozen=True)
class SignedManifest:
    """The manifest's exact bytes and where the release keeps their signature."""

    data: bytes
    signature_url: str


@dataclass(frozen=True)
class Artifact:
    name: str
    url: str  # where it comes from: a URL, or a file on this device
    sha256: str
    sha256_source: str  # "manifest checksum", "release asset digest"; for a file: who vouched for it
    signature_url: str | None = None  # <name>.sig, fetched only when a signing key is configured
    manifest: SignedManifest | None = None  # likewise, when the release has a manifest


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

    @property
    def requires_signed_manifest(self) -> bool:
        """With signatures required, the manifest (migration script, checks) must be signed
        as the archive is: a release without a valid one is refused, not updated without them."""
        return self._signatures.required

    def artifact(self, spec: ComponentSpec, release: Release, version_text: str, manifest: Manifest | None) -> Artifact:
        """The archive to install and the sha256 it must have; refuses when none is known."""
        name = spec.asset_pattern.replace("{version}", version_text)
        asset = release.asset(name)
        url = (manifest.artifact_url if manifest and manifest.artifact_url else None) or (asset.url if asset else None)
        if url is None:
            raise DownloadError(f"release {release.tag} has no asset {name!r}")
        signature_url, signed = self._signature_url(release, name), self._signed_manifest(release, manifest)
        if manifest and manifest.checksum:
            return Artifact(name, url, manifest.checksum, "manifest checksum", signature_url, signed)
        if asset and asset.digest and asset.digest.lower().startswith("sha256:"):
            digest = asset.digest.split(":", 1)[1].lower()
            return Artifact(name, url, digest, "release asset digest", signature_url, signed)
        raise DownloadError(
            f"no sha256 is known for {name!r}: the release asset has no digest and the manifest no checksum"
        )

    def _signature_url(self, release: Release, name: str) -> str | None:
        return self._signature_asset(release, name) if self._signatures.required else None

    def _signature_asset(self, release: Release, name: str) -> str:
        signature = release.asset(name + SIGNATURE_SUFFIX)
        if signature is None:
            raise SignatureError(
                f"release {release.tag} has no signature {name + SIGNATURE_SUFFIX!r}, "
                "and this device requires signed releases (signingPublicKey/allowedSigners)"
            )
        return signature.url

    def _signed_manifest(self, release: Release, manifest: Manifest | None) -> SignedManifest | None:
        """The manifest chooses the migration script and the checks: when signatures are
        required, it needs one of its own."""
        if manifest is None or not self._signatures.required:
            return None
        return SignedManifest(manifest.source, self._signature_asset(release, MANIFEST_FILE))

    async def prepare(self, artifact: Artifact) -> Prepared:
        settings = self._settings
        policy = DownloadPolicy.from_settings(settings)
        if artifact.manifest is not None:  # before anything the manifest names is fetched
            await self._verify(artifact.manifest.data, artifact.manifest.signature_url, MANIFEST_FILE, policy)
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
            signer = await self._verify(archive, artifact.signature_url, artifact.name, policy)
        except DownloadError:
            archive.unlink(missing_ok=True)  # verified bytes, but not from a trusted signer: keep nothing
            raise
        return Prepared(artifact, archive, signer)

    def check_release(self, prepared: Prepared, manifest: Manifest | None) -> None:
        """That a downloaded file is a release archive, and what a manifest requires of
        it, checked before anything changes (the playbook checks again while staging,
        for runs by hand). The headers read for that are held to the device's caps; the
        rest of the archive is read by the extraction on the device."""
        name = prepared.artifact.name
        script = manifest.migration_script if manifest and manifest.migration_required else None
        try:
            problem = _not_an_archive(prepared.archive)
            if problem:
                raise DownloadError(f"{name} is not a release archive (a .tar.gz): {problem}")
            if script and not _archive_holds(prepared.archive, script, self._max_extract_bytes):
                raise _missing_migration_script(name, script)
        except ArchiveRefused as exc:
            raise DownloadError(f"refused release archive {name}: {exc}") from None

    def check_whole_release(self, prepared: Prepared, version_text: str, manifest: Manifest | None) -> None:
        """A release archive read through whole, under the device's caps: one from this
        device (a file the operator names, a bundle's) before anything changes, and one
        put into a bundle. A copy cut short or damaged, a release of another version (its
        VERSION file), or one without the migration script its manifest requires is
        refused here, not while staging."""
        name = prepared.artifact.name
        try:
            contents = read_release_archive(
                prepared.archive, max_bytes=self._max_extract_bytes, max_members=MAX_MEMBERS
            )
        except ArchiveRefused as exc:
            raise DownloadError(f"refused release archive {name}: {exc}") from None
        except NotAReleaseArchive as exc:
            raise DownloadError(f"{name} is not a release archive (a .tar.gz): {exc}") from None
        if contents.version is not None and without_v(contents.version) != without_v(version_text):
            raise DownloadError(f"{name} holds release {contents.version} (its VERSION file), not {version_text}")
        script = manifest.migration_script if manifest and manifest.migration_required else None
        if script and script not in contents.files:
            raise _missing_migration_script(name, script)

    @property
    def _max_extract_bytes(self) -> int:
        return self._settings.max_extract_mb * 1024 * 1024

    async def prepare_local(self, files: LocalFiles, manifest: Manifest | None) -> Prepared:
        """A release archive already on this device, copied under statePath and verified
        there as a download is: against every sha256 known for it (typed by the operator,
        recorded in a bundle, the manifest's checksum), and, when this device requires
        signatures, against its signature (the manifest's first). A sha256 from the
        operator or the bundle, or a required signature, must vouch for it."""
        self._require_proof(files)
        if manifest is not None and self._signatures.required:
            signature = await asyncio.to_thread(files.signature_of, MANIFEST_FILE)
            await self._verified_by(manifest.source, signature, MANIFEST_FILE)
        archive = self._state.subdir("downloads") / files.archive.name
        digest = await asyncio.to_thread(files.copy_archive, archive, self._settings.max_download_mb * 1024 * 1024)
        try:
            also = (Checksum(manifest.checksum, "the manifest's checksum"),) if manifest and manifest.checksum else ()
            files.check_digest(digest, *also)
            signer = None
            if self._signatures.required:
                signature = await asyncio.to_thread(files.signature_of, archive.name)
                signer = await self._verified_by(archive, signature, archive.name)
        except DownloadError:
            archive.unlink(missing_ok=True)  # nothing unvouched for stays behind
            raise
        vouchers = [checksum.source for checksum in files.checksums] + ([f"signature by {signer}"] if signer else [])
        return Prepared(Artifact(archive.name, str(files.archive), digest, ", ".join(vouchers)), archive, signer)

    def _require_proof(self, files: LocalFiles) -> None:
        if not files.checksums and not self._signatures.required:
            raise DownloadError(
                f"nothing vouches for {files.where}: give the sha256 published with the release "
                "(--sha256 HEX), or set signingPublicKey/allowedSigners and give its signature (--signature FILE)"
            )

    async def _verify(self, signed: Path | bytes, signature_url: str, name: str, policy: DownloadPolicy) -> str:
        """The principal whose signature (fetched from signature_url) covers `signed`."""
        return await self._verified_by(signed, await self.fetch_signature(signature_url, name, policy), name)

    async def fetch_signature(self, url: str, name: str, policy: DownloadPolicy | None = None) -> bytes:
        """The signature of file `name`, downloaded from `url` under the download rules."""
        return await download_bytes(
            url,
            policy or DownloadPolicy.from_settings(self._settings),
            max_bytes=MAX_SIGNATURE_BYTES,
            name=name + SIGNATURE_SUFFIX,
            token=self._settings.github_token,
            transport=self._transport,
        )

    async def _verified_by(self, signed: Path | bytes, signature: bytes, name: str) -> str:
        """The principal whose `signature` covers `signed`; SignatureError otherwise."""
        if isinstance(signed, bytes):
            return await asyncio.to_thread(self._signatures.verify_bytes, signed, signature, name=name)
        return await asyncio.to_thread(self._signatures.verify, signed, signature, name=name)

    @staticmethod
    def target_version(release: Release, manifest: Manifest | None) -> str:
        return release.version_text

    async def prepare_release(self, plan: Plan) -> PreparedUpdate:
        """Download (or copy from this device) and verify the archive (and its
        signatures), check what the manifest requires of it; the extra-vars every device
        gets (`release_vars`)."""
        spec, files = plan.spec, plan.release.files
        if files is None:
            prepared = await self.prepare(self.artifact(spec, plan.release, plan.version_text, plan.manifest))
            obtained, origin = "downloaded", {"url": prepared.artifact.url}
            check = functools.partial(self.check_release, prepared, plan.manifest)
        else:
            prepared = await self.prepare_local(files, plan.manifest)
            obtained, origin = f"copied from {files.where}", {"file": prepared.artifact.url}
            check = functools.partial(self.check_whole_release, prepared, plan.version_text, plan.manifest)
        try:
            await asyncio.to_thread(check)
        except (DownloadError, ManifestRefused):
            prepared.archive.unlink(missing_ok=True)  # a refused archive stays nowhere
            raise
        artifact = prepared.artifact
        details = {
            "artifact": artifact.name,
            **origin,
            "sha256": artifact.sha256,
            "sha256_source": artifact.sha256_source,
            "verified": True,
            "steps": list(UPDATE_STEPS),
        }
        return PreparedUpdate(
            self.release_vars(spec, plan.version_text, prepared, plan.manifest),
            details,
            f"{artifact.name} {obtained} and verified (sha256 from {artifact.sha256_source})",
        )

    async def prepare_update(self, plan: Plan) -> PreparedUpdate:
        """The release prepared, with this device's settings: update_core.yml's extra-vars."""
        release = await self.prepare_release(plan)
        device = {**self.device_vars(plan.spec), "core_from_version": plan.from_version or ""}
        return dataclasses.replace(release, extra_vars={**device, **release.extra_vars})

    def rollback_vars(self, spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        return {**self.device_vars(spec), **self.rollback_target_vars(spec, to_version)}

    @staticmethod
    def rollback_target_vars(spec: ComponentSpec, to_version: str | None) -> dict[str, Any]:
        """The version to go back to ("": the previous release); a fleet rollback passes only these."""
        return {"dunebugger_component": spec.name, "core_rollback_version": to_version or ""}

    def missing_rollback_target(self, spec: ComponentSpec) -> str | None:
        """Why a rollback without --to has nowhere to go, in the command line's words
        (None: a previous release is recorded, and the playbook takes it from there)."""
        releases = releases_path(spec)
        if previous_release(releases):
            return None
        kept = retained_releases(releases, self._settings.backup_path)
        return (
            f"no previous {spec.name} release is recorded; name one with --to V "
            f"({'retained: ' + ', '.join(kept) if kept else 'none is retained in ' + str(releases)})"
        )

    def unknown_rollback_target(self, spec: ComponentSpec, to_version: str) -> str | None:
        """A retained release directory, a backup, or what runs now (the rollback then
        has nothing to do) can be gone back to; as the rollback playbook decides."""
        releases, backups = releases_path(spec), self._settings.backup_path
        kept = retained_releases(releases, backups)
        if to_version in kept or to_version == without_v(installed_version(self._settings, spec).version or ""):
            return None
        return (
            f"{spec.name} {to_version} is neither retained in {releases} nor backed up in {backups}"
            f" ({'retained: ' + ', '.join(kept) if kept else 'none is kept'})"
        )

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

    @staticmethod
    def post_switch_waits(spec: ComponentSpec, manifest: Manifest | None) -> list[tuple[str, float]]:
        """The longest waits after the switch, each named as the setting that sets it."""
        checks = manifest.checks if manifest else None
        waits = [
            _named_wait(
                "post_update_checks service_active timeout_seconds",
                checks.service_active_timeout if checks else None,
                "the service's start wait",
                SERVICE_ACTIVE_TIMEOUT_SECONDS + (spec.settle_seconds or SETTLE_SECONDS),
            )
        ]
        if (checks and checks.health_url) or spec.health_url:
            waits.append(
                _named_wait(
                    "post_update_checks health_endpoint timeout_seconds",
                    checks.health_timeout if checks else None,
                    "healthTimeoutSeconds",
                    spec.health_timeout_seconds,
                )
            )
        return waits

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
            "core_service_active_timeout_seconds": SERVICE_ACTIVE_TIMEOUT_SECONDS,
            "core_python": spec.python,
            "core_pip_extra_args": list(spec.pip_extra_args),
            **({"postflight_settle_seconds": spec.settle_seconds} if spec.settle_seconds else {}),
        }


def manifest_check_vars(manifest: Manifest | None) -> dict[str, Any]:
    """What a release's manifest asks for: checks before the switch as core_* variables,
    and the checks that verify this release (only this one) as dunebugger_release_checks."""
    if manifest is None:
        return {}
    checks = manifest.checks
    candidates = {
        "core_min_free_mb": checks.min_free_mb,
        "core_check_service_running_before": checks.require_service_running or None,
        "core_backup_max_age_hours": checks.backup_max_age_hours,
        "core_migration_script": manifest.migration_script,
        "core_migration_required": manifest.migration_required or None,
        "dunebugger_release_checks": checks.verification(),
    }
    return {name: value for name, value in candidates.items() if value}


def _named_wait(
    manifest_field: str, manifest_value: float | None, default_name: str, default: float
) -> tuple[str, float]:
    if manifest_value:
        return manifest_field, float(manifest_value)
    return default_name, float(default)


MAX_MEMBERS = 20000  # as the extraction's member cap (core_max_extract_members)


def _missing_migration_script(name: str, script: str) -> ManifestRefused:
    return ManifestRefused(
        f"update_steps.run_migrations.script: {name} has no {script!r}, "
        "which the manifest requires (add optional: true if the release may lack it)"
    )


def _not_an_archive(archive: Path) -> str | None:
    """Why `archive` cannot be read as a tar archive (gzip, bzip2 or xz), or None. Reads
    the first member's headers only; ArchiveRefused for a hostile one."""
    try:
        with open_archive(archive, MAX_MEMBERS) as tar:
            if tar.next() is None:
                return "it holds no file"
    except (OSError, tarfile.TarError, EOFError) as exc:
        return tar_problem(exc)
    return None


def _archive_holds(archive: Path, relpath: str, max_bytes: int) -> bool:
    """Whether the release archive holds the regular file `relpath`, at its root or under
    the one top directory that extraction strips. Reads member headers only, under the
    device's caps (ArchiveRefused past one)."""
    wanted = PurePosixPath(relpath)
    try:
        with open_archive(archive, MAX_MEMBERS, max_bytes) as tar:
            for member in capped_members(tar, max_bytes):
                name = PurePosixPath(member.name)
                if member.isfile() and wanted in (name, PurePosixPath(*name.parts[1:])):
                    return True
    except (OSError, tarfile.TarError, EOFError):
        return False  # extraction refuses it with its own message
    return False
