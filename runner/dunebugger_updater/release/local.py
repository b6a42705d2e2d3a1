"""Releases from files on this device, for devices without internet.

The operator names a release archive (core), an image archive made with `docker save`
(a container component), or a bundle directory made by `bundle create`. The release
found there takes the same way as one from GitHub: the same plan (version rules,
manifest, deadline fit), the same playbooks, checks, rollback, journal and history.
What differs is where its files are, and what vouches for them:

- a release archive: the sha256 the operator typed (`--sha256`) and, when this device
  requires signatures, its signature (`--signature FILE`, else `<archive>.sig` beside
  it); at least one of the two. An `update-manifest.yaml` beside it (required, and signed
  as `update-manifest.yaml.sig`, when signatures are required) is used like one at a tag;
- an image archive: it must hold one image of the configured repository; its version is
  its tag, else its `org.opencontainers.image.version` label; a typed sha256 is checked;
- a bundle: `bundle.json` records the sha256 of every file as it was verified when the
  bundle was made; every file must match, and must be inside the bundle (links resolved).

The service reads bundles only inside `bundlePath` (`LocalSource.bundle`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..config import ComponentSpec, Settings
from ..errors import DownloadError, ManifestRefused, ReleaseLookupError, SignatureError, UpdaterError, os_reason
from ..files import FileTooLarge, copy_hashed, open_regular, sha256_file
from ..statedir import create_new
from ..versions import NotAVersion, parse_or_none, parse_version
from .bundle_index import INDEX_FILE, MAX_INDEX_BYTES, BundleEntry, BundleError, archive_name, read_index
from .image_archive import VERSION_LABEL, ImageArchive, NotAnImageArchive, read_image_archive
from .manifest import MAX_MANIFEST_BYTES
from .releases import MANIFEST_FILE, Release, checked_channel
from .signatures import MAX_SIGNATURE_BYTES, SIGNATURE_SUFFIX, SignaturePolicy


@dataclass(frozen=True)
class LocalSource:
    """Where the operator says a release is: a file or a bundle directory."""

    path: Path
    sha256: str | None = None  # typed by the operator: lowercase hex
    signature: Path | None = None  # --signature FILE
    within: Path | None = None  # only a bundle, and only inside this directory (links resolved)

    @classmethod
    def bundle(cls, root: Path, name: str) -> LocalSource:
        """A bundle the service is asked for: `name` relative to `root` (bundlePath), or
        an absolute path that must lead inside it."""
        return cls(root / name, within=root)


@dataclass(frozen=True)
class Checksum:
    sha256: str
    source: str  # who vouches for it: "--sha256", "bundle.json", "the manifest's checksum"


@dataclass(frozen=True)
class LocalFiles:
    """A release's files on this device, and what vouches for them."""

    where: str  # how messages name them: the file, or "bundle DIR"
    archive: Path  # the release archive, or the image archive
    checksums: tuple[Checksum, ...]  # what the archive's sha256 must be, and who says so
    signatures: Mapping[str, Path]  # signed file name (the archive's, update-manifest.yaml) -> its signature
    manifest: Path | None
    recorded: Mapping[Path, str] = field(default_factory=dict)  # a bundle's sha256 of each file (bundle.json)
    image_id: str | None = None  # an image archive: the image it holds ("sha256:<hex>")

    @property
    def is_bundle(self) -> bool:
        return bool(self.recorded)

    def check_digest(self, digest: str, *also: Checksum) -> None:
        """Refuse an archive whose sha256 is not every one known for it."""
        for expected in (*self.checksums, *also):
            if digest != expected.sha256:
                raise DownloadError(
                    f"sha256 mismatch for {self.archive.name}: expected {expected.sha256} "
                    f"({expected.source}), got {digest}"
                )

    def read_manifest(self) -> bytes | None:
        if self.manifest is None:
            return None
        return self._read(self.manifest, MAX_MANIFEST_BYTES + 1, ManifestRefused)  # larger: load refuses it

    def signature_of(self, name: str) -> bytes:
        """The signature of file `name`; SignatureError when there is none."""
        path = self.signatures.get(name)
        if path is None:
            hint = "" if self.is_bundle or name != self.archive.name else " (or give --signature FILE)"
            raise SignatureError(
                f"{self.where} has no signature {name + SIGNATURE_SUFFIX!r}{hint}, and this device requires "
                "signed releases (signingPublicKey/allowedSigners)"
            )
        return self._read(path, MAX_SIGNATURE_BYTES + 1, SignatureError)  # larger: verify refuses it

    def copy_archive(self, destination: Path, max_bytes: int) -> str:
        """Copy the archive to `destination` and return its sha256; a partial copy is
        removed. Held to the cap of a download (maxDownloadMb): the copy lands under
        statePath, often on a small SD card."""
        partial = destination.with_name(destination.name + ".partial")
        partial.unlink(missing_ok=True)
        try:
            with open_regular(self.archive) as source, os.fdopen(create_new(partial), "wb") as target:
                digest = copy_hashed(source, target, max_bytes)
            os.replace(partial, destination)
        except FileTooLarge:
            raise DownloadError(f"{self.archive} is larger than the cap of {max_bytes} bytes (maxDownloadMb)") from None
        except OSError as exc:
            raise DownloadError(f"cannot copy {self.archive}: {os_reason(exc)}") from None
        finally:
            partial.unlink(missing_ok=True)
        return digest

    def archive_digest(self) -> str:
        try:
            return sha256_file(self.archive)
        except OSError as exc:
            raise DownloadError(f"cannot read {self.archive}: {os_reason(exc)}") from None

    def _read(self, path: Path, limit: int, error: type[UpdaterError]) -> bytes:
        try:
            with open_regular(path) as handle:
                data = handle.read(limit)
        except OSError as exc:
            raise error(f"cannot read {path}: {os_reason(exc)}") from None
        recorded = self.recorded.get(path)
        if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
            raise error(f"{self.where}: {path.name} does not match its sha256 in {INDEX_FILE}")
        return data


class LocalReleases:
    """A ReleaseSource over the one release a LocalSource names, for one component."""

    def __init__(self, source: LocalSource, settings: Settings, spec: ComponentSpec) -> None:
        self._source = source
        self._spec = spec
        self._signatures_required = SignaturePolicy.from_settings(settings).required
        self._release: Release | None = None

    async def __aenter__(self) -> LocalReleases:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    async def find(self, component: str, repo: str, version: str | None, *, include_prerelease: bool) -> Release:
        """The release at the source; `version`, when given, must be its version."""
        release = await self._opened(version)
        if version is not None and parse_version(version) != release.version:
            where = release.files.where if release.files else str(self._source.path)
            raise self._refused(f"--version {version} was asked for, but {where} holds {release.tag}")
        return checked_channel(component, release, include_prerelease)

    async def manifest(self, component: str, repo: str, tag: str) -> bytes | None:
        files = (await self._opened(None)).files
        return await asyncio.to_thread(files.read_manifest) if files else None

    async def _opened(self, version: str | None) -> Release:
        if self._release is None:
            self._release = await asyncio.to_thread(self._open, version)
        return self._release

    def _open(self, version: str | None) -> Release:
        path = self._located()
        if path.is_dir():
            return self._from_bundle(path)
        if self._source.within is not None:
            raise self._refused(f"{path} is not a bundle directory")
        if self._spec.is_container:
            return self._from_image_archive(path)
        return self._from_release_archive(path, version)

    def _located(self) -> Path:
        """The source's path; for the service, resolved and inside bundlePath."""
        path, root = self._source.path, self._source.within
        if root is None:
            if not path.exists():
                raise self._refused(f"{path} does not exist")
            return path
        inside = self._resolved(root, f"bundlePath {root}")
        resolved = self._resolved(path, f"bundle {path}")
        if resolved != inside and inside not in resolved.parents:
            leads = f" (it leads to {resolved})" if resolved != path else ""
            raise self._refused(f"bundle {path} is outside bundlePath {root}{leads}")
        return resolved

    # --- a bundle --------------------------------------------------------------------

    def _from_bundle(self, directory: Path) -> Release:
        entry = self._entry(directory)
        inside = self._resolved(directory, f"bundle {directory}")
        paths = {name: self._in_bundle(directory, inside, entry, name) for name in entry.files}
        archive = paths[entry.archive]
        files = LocalFiles(
            where=f"bundle {directory}",
            archive=archive,
            checksums=(Checksum(entry.files[entry.archive], INDEX_FILE), *self._typed()),
            signatures={name: paths[name + SIGNATURE_SUFFIX] for name in paths if name + SIGNATURE_SUFFIX in paths},
            manifest=paths.get(MANIFEST_FILE),
            recorded={paths[name]: digest for name, digest in entry.files.items()},
            image_id=self._image(archive, entry.version).image_id if self._spec.is_container else None,
        )
        return self._release_of(entry.tag, files)

    def _entry(self, directory: Path) -> BundleEntry:
        index = directory / INDEX_FILE
        if not index.exists():
            raise self._refused(f"{directory} is not a bundle: it has no {INDEX_FILE}")
        try:
            with open_regular(index) as handle:
                entries = read_index(handle.read(MAX_INDEX_BYTES + 1))
        except OSError as exc:
            raise self._refused(f"cannot read {index}: {os_reason(exc)}") from None
        except BundleError as exc:
            raise self._refused(f"bundle {directory}: {exc}") from None
        entry = next((entry for entry in entries if entry.component == self._spec.name), None)
        if entry is None:
            held = ", ".join(f"{entry.component} {entry.version}" for entry in entries) or "nothing"
            raise self._refused(f"bundle {directory} holds no release of {self._spec.name} (it holds {held})")
        if entry.type != self._spec.type:
            raise self._refused(
                f"bundle {directory}: {entry.component} is a {entry.type} there, a {self._spec.type} on this device"
            )
        expected = archive_name(self._spec, entry.version)
        if entry.archive != expected:
            raise self._refused(
                f"bundle {directory}: {INDEX_FILE}: the archive {entry.archive!r} of {entry.component} is not that "
                f"of its version {entry.version} ({expected!r})"
            )
        return entry

    def _in_bundle(self, directory: Path, inside: Path, entry: BundleEntry, name: str) -> Path:
        """A file of the bundle, links resolved; it must be inside the bundle (`inside`)."""
        path = directory / entry.component / name
        if not path.exists():
            raise self._refused(f"bundle {directory} lacks {entry.component}/{name}, which {INDEX_FILE} lists")
        resolved = self._resolved(path, f"{entry.component}/{name}")
        if inside not in resolved.parents:
            raise self._refused(f"bundle {directory}: {entry.component}/{name} leads outside the bundle ({resolved})")
        return resolved

    # --- one file --------------------------------------------------------------------

    def _from_release_archive(self, path: Path, version: str | None) -> Release:
        if self._source.signature is not None and not self._signatures_required:
            raise self._refused(
                "--signature was given, but this device has no signingPublicKey or allowedSigners to verify it with"
            )
        beside = path.parent
        signature = self._source.signature or _existing(beside / (path.name + SIGNATURE_SUFFIX))
        signatures = {path.name: signature, MANIFEST_FILE: _existing(beside / (MANIFEST_FILE + SIGNATURE_SUFFIX))}
        files = LocalFiles(
            where=str(path),
            archive=path,
            checksums=self._typed(),
            signatures={name: sig for name, sig in signatures.items() if sig is not None},
            manifest=_existing(beside / MANIFEST_FILE),
        )
        text = self._version_from_name(path) or version
        if text is None:
            raise self._refused(
                f"cannot tell the version of {path}: its name does not follow assetPattern "
                f"{self._spec.asset_pattern!r}; rename it so, or give --version V"
            )
        return self._release_of(text, files)

    def _from_image_archive(self, path: Path) -> Release:
        if self._source.signature is not None:
            raise self._refused("--signature applies to release archives; image archives carry no signature")
        image = self._image(path)
        files = LocalFiles(
            where=str(path),
            archive=path,
            checksums=self._typed(),
            signatures={},
            manifest=_existing(path.parent / MANIFEST_FILE),
            image_id=image.image_id,
        )
        return self._release_of(self._image_version(path, image), files)

    def _version_from_name(self, path: Path) -> str | None:
        """The version in the archive's name, read with assetPattern."""
        prefix, _, suffix = self._spec.asset_pattern.partition("{version}")
        found = re.fullmatch(re.escape(prefix) + "(.+)" + re.escape(suffix), path.name)
        return found.group(1) if found and parse_or_none(found.group(1)) else None

    def _image(self, path: Path, version: str | None = None) -> ImageArchive:
        """The image an archive holds: one image of the configured repository (of
        `version`, when a bundle says which)."""
        try:
            image = read_image_archive(path)
        except NotAnImageArchive as exc:
            raise self._refused(f"{path} is not an image archive: {exc}") from None
        found = self._image_version(path, image)
        if version is not None and parse_version(found) != parse_version(version):
            raise self._refused(f"{path} holds {self._spec.image} {found}, not {version} as {INDEX_FILE} says")
        return image

    def _image_version(self, path: Path, image: ImageArchive) -> str:
        """The release an image archive holds: its tag, else its version label. Every
        version it states must be the same one (an image re-tagged as another release
        still says which one it is)."""
        tags = image.tags_of(self._spec.image)
        if not tags:
            held = ", ".join(image.references) or "an image without a name"
            raise self._refused(f"{path} holds {held}, not an image of the configured {self._spec.image}")
        stated = {f"tag {tag}": tag for tag in tags if parse_or_none(tag)}  # what says which release, and how
        label = image.version_label
        if label is not None and parse_or_none(label):
            stated[f"{VERSION_LABEL} label {label}"] = label
        if not stated:
            raise self._refused(
                f"cannot tell the version of {path}: its tag ({', '.join(tags)}) is not a version "
                f"and it has no {VERSION_LABEL} label"
            )
        if len({parse_version(text) for text in stated.values()}) > 1:
            raise self._refused(
                f"{path} names more than one release of {self._spec.image} ({', '.join(stated)}); "
                "an image is one release, whatever it is tagged"
            )
        return next(iter(stated.values()))

    # --- small helpers ---------------------------------------------------------------

    def _typed(self) -> tuple[Checksum, ...]:
        return (Checksum(self._source.sha256, "--sha256"),) if self._source.sha256 else ()

    def _release_of(self, tag: str, files: LocalFiles) -> Release:
        try:
            version = parse_version(tag)
        except NotAVersion as exc:
            raise self._refused(f"{files.where}: {exc}") from None
        return Release(tag, version, None, version.is_prerelease, None, (), files)

    def _resolved(self, path: Path, what: str) -> Path:
        try:
            return path.resolve(strict=True)
        except OSError as exc:
            raise self._refused(f"{what} cannot be used: {os_reason(exc)}") from None
        except RuntimeError:  # Python 3.11 says so for a loop of links
            raise self._refused(f"{what} cannot be used: a loop of symbolic links") from None

    def _refused(self, reason: str) -> ReleaseLookupError:
        return ReleaseLookupError(self._spec.name, reason)


def _existing(path: Path) -> Path | None:
    return path if path.exists() else None
