"""`bundle.json`: the index of a bundle directory, written by `bundle create` on a
machine with internet and read by a device without it.

    DIR/bundle.json
    DIR/<component>/<release archive or image archive>
    DIR/<component>/<archive>.sig, update-manifest.yaml, update-manifest.yaml.sig  (when the release has them)

The index names, per component, its type, the release's tag and version, the archive,
and the sha256 of every file of the component's directory as it was verified when the
bundle was made. A device reads it strictly: anything off its shape is refused, and so
is a file whose bytes no longer match.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import COMPONENT_NAME, COMPONENT_TYPES, ComponentSpec
from ..versions import NotAVersion, parse_version

INDEX_FILE = "bundle.json"
FORMAT = 1
MAX_INDEX_BYTES = 1024 * 1024
FILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]{0,199}$")  # no path, no leading dot or dash
SHA256 = re.compile(r"^[0-9a-f]{64}$")


class BundleError(ValueError):
    """A bundle index that cannot be used; the message names the field."""


@dataclass(frozen=True)
class BundleEntry:
    """One component's release in a bundle."""

    component: str
    type: str
    tag: str
    version: str  # the version text the device will report (tag without "v", or the image tag)
    archive: str  # the release archive or image archive, in <component>/
    files: Mapping[str, str]  # every file in <component>/ (the archive included) -> its sha256

    def document(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "type": self.type,
            "tag": self.tag,
            "version": self.version,
            "archive": self.archive,
            "files": dict(sorted(self.files.items())),
        }


def archive_name(spec: ComponentSpec, version: str) -> str:
    """The archive a bundle holds for `spec` at `version`: its release asset
    (assetPattern), or its image saved as `<image name>-<version>.tar`."""
    if spec.is_container:
        return f"{spec.image.rsplit('/', 1)[-1]}-{version}.tar"
    return spec.asset_pattern.replace("{version}", version)


def write_index(directory: Path, entries: Iterable[BundleEntry]) -> Path:
    document = {"format": FORMAT, "releases": [entry.document() for entry in entries]}
    path = directory / INDEX_FILE
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def read_index(data: bytes) -> list[BundleEntry]:
    """The entries of an index's bytes, or BundleError naming what is wrong."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError):
        raise BundleError(f"{INDEX_FILE} is not JSON") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"{INDEX_FILE} is not a bundle index of format {FORMAT}")
    releases = document.get("releases")
    if not isinstance(releases, list):
        raise BundleError(f"{INDEX_FILE}: 'releases' must be a list")
    entries = [_entry(item, f"releases[{index}]") for index, item in enumerate(releases)]
    names = [entry.component for entry in entries]
    repeated = next((name for name in names if names.count(name) > 1), None)
    if repeated:
        raise BundleError(f"{INDEX_FILE}: component {repeated!r} appears twice")
    return entries


def _entry(item: Any, where: str) -> BundleEntry:
    if not isinstance(item, dict) or set(item) != {"component", "type", "tag", "version", "archive", "files"}:
        raise BundleError(f"{INDEX_FILE}: {where} must hold component, type, tag, version, archive and files")
    component, kind, tag, version, archive, files = (
        item[key] for key in ("component", "type", "tag", "version", "archive", "files")
    )
    if not isinstance(component, str) or not COMPONENT_NAME.fullmatch(component):
        raise BundleError(f"{INDEX_FILE}: {where}.component {component!r} is not a component name")
    if kind not in COMPONENT_TYPES:
        raise BundleError(f"{INDEX_FILE}: {where}.type {kind!r} is not one of {', '.join(COMPONENT_TYPES)}")
    versions = []
    for field, text in (("tag", tag), ("version", version)):
        try:
            versions.append(parse_version(text if isinstance(text, str) else ""))
        except NotAVersion:
            raise BundleError(f"{INDEX_FILE}: {where}.{field} {text!r} is not a version") from None
    if versions[0] != versions[1]:  # the version a device installs is the tag's, as the release lookup reads it
        raise BundleError(f"{INDEX_FILE}: {where}.tag {tag!r} and {where}.version {version!r} name different releases")
    if not isinstance(files, dict) or not all(_file_entry(name, digest) for name, digest in files.items()):
        raise BundleError(f"{INDEX_FILE}: {where}.files must map plain file names to sha256 digests (64 hex digits)")
    if archive not in files:
        raise BundleError(f"{INDEX_FILE}: {where}.archive {archive!r} is not among its files")
    return BundleEntry(component, kind, tag, version, archive, dict(files))


def _file_entry(name: Any, digest: Any) -> bool:
    return (
        isinstance(name, str)
        and bool(FILE_NAME.fullmatch(name))
        and isinstance(digest, str)
        and bool(SHA256.fullmatch(digest))
    )
