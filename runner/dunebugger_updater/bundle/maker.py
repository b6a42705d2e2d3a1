"""Bundles: on a machine with internet, the releases that devices without it need,
obtained and verified exactly as a device would obtain and verify them, written as a
directory (`release/bundle_index.py` describes it) to carry over on a USB stick.

- core (a python_app): the release lookup, the manifest's verdict and the download,
  sha256 and signature checks of `CoreProcedure`; the archive's and the manifest's
  signatures are carried along when the release has them, so a device that requires
  signatures can check them;
- a container: the image the release names, pulled from its registry by the engine of
  this machine and saved with `docker save`.

Nothing is left behind when a component fails: the bundle is assembled in a temporary
directory beside the target and renamed into place once complete.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..config import ComponentSpec, Settings
from ..device import images
from ..device.container_procedure import ContainerProcedure
from ..device.core_procedure import CoreProcedure
from ..errors import BadRequest, DownloadError, ManifestError, PreflightError, ReleaseLookupError
from ..files import sha256_file
from ..release.bundle_index import BundleEntry, archive_name, write_index
from ..release.manifest import DeviceNames, Manifest, release_manifest
from ..release.releases import MANIFEST_FILE, Release, ReleaseClient, client_for
from ..release.signatures import SIGNATURE_SUFFIX

BUNDLE_MODE = 0o755


@dataclass(frozen=True)
class Wanted:
    """A component to put in a bundle, at a version (None: its newest release)."""

    component: str
    version: str | None = None


class BundleMaker:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._core = CoreProcedure(settings, transport=transport)
        self._containers = ContainerProcedure(settings)

    async def create(self, wanted: Sequence[Wanted], directory: Path) -> list[BundleEntry]:
        """Write a bundle of `wanted` to `directory` (new, or empty) and return its index."""
        specs = [(self._settings.component(item.component), item.version) for item in wanted]
        _check_unused(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
        try:
            entries = []
            async with client_for(self._settings, self._transport) as client:
                for spec, version in specs:
                    entries.append(await self._component(client, spec, version, work / spec.name))
            write_index(work, entries)
            work.chmod(BUNDLE_MODE)
            if directory.exists():
                directory.rmdir()  # empty, as checked
            work.rename(directory)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return entries

    async def _component(
        self, client: ReleaseClient, spec: ComponentSpec, version: str | None, folder: Path
    ) -> BundleEntry:
        try:
            return await self._add(client, spec, version, folder)
        except (ReleaseLookupError, ManifestError, DownloadError, PreflightError) as exc:
            raise DownloadError(f"{spec.name}: {exc.reason}; no bundle was written") from None

    async def _add(self, client: ReleaseClient, spec: ComponentSpec, version: str | None, folder: Path) -> BundleEntry:
        release = await client.find(spec.name, spec.repo, version, include_prerelease=self._settings.include_prerelease)
        data = await client.manifest(spec.name, spec.repo, release.tag)
        # Judged as this machine's configuration would judge it: run with the devices' one.
        device = DeviceNames.of(spec, self._settings.backup_path)
        signed = (self._containers if spec.is_container else self._core).requires_signed_manifest
        manifest, _ = release_manifest(data, spec, release, device=device, signed=signed)
        folder.mkdir()
        if spec.is_container:
            version_text = self._containers.target_version(release, manifest)
            archive = await self._image(spec, version_text, folder)
        else:
            version_text = self._core.target_version(release, manifest)
            archive = await self._release_archive(spec, release, version_text, manifest, folder)
        if data is not None:
            (folder / MANIFEST_FILE).write_bytes(data)
        for name in (archive.name, MANIFEST_FILE):
            asset = release.asset(name + SIGNATURE_SUFFIX)
            if asset is not None and (folder / name).exists():
                (folder / asset.name).write_bytes(await self._core.fetch_signature(asset.url, name))
        files = {path.name: await asyncio.to_thread(sha256_file, path) for path in sorted(folder.iterdir())}
        return BundleEntry(spec.name, spec.type, release.tag, version_text, archive.name, files)

    async def _release_archive(
        self, spec: ComponentSpec, release: Release, version_text: str, manifest: Manifest | None, folder: Path
    ) -> Path:
        prepared = await self._core.prepare(self._core.artifact(spec, release, version_text, manifest))
        # Read through as a device will read it: a bundle a device would refuse is not made.
        await asyncio.to_thread(self._core.check_whole_release, prepared, version_text, manifest)
        target = folder / prepared.artifact.name
        await asyncio.to_thread(shutil.copyfile, prepared.archive, target)
        if await asyncio.to_thread(sha256_file, target) != prepared.artifact.sha256:
            raise DownloadError(f"the copy of {target.name} in the bundle differs from the verified download")
        return target

    async def _image(self, spec: ComponentSpec, tag: str, folder: Path) -> Path:
        reference = f"{spec.image}:{tag}"
        archive = folder / archive_name(spec, tag)
        await asyncio.to_thread(images.pull, reference)
        await asyncio.to_thread(images.save, reference, archive)
        return archive


def _check_unused(directory: Path) -> None:
    if directory.is_symlink() or (directory.exists() and not directory.is_dir()):
        raise BadRequest(f"-o {directory}: exists and is not a directory; name a new directory for the bundle")
    if directory.is_dir() and any(directory.iterdir()):
        raise BadRequest(f"-o {directory}: is not empty; name a new or empty directory for the bundle")
