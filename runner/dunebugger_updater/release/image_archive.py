"""What a `docker save` archive holds, read without the container engine: the names
(`repository:tag`) it carries, the id of its image and the image's labels.

`docker save` writes a tar (the engine also loads it gzip-, bzip2- or xz-compressed)
whose `manifest.json` lists each image: its config file, its `RepoTags` and its layers.
An image's id is the sha256 of its config, so the id read here is the one the engine
gives the image when it loads the archive; `docker load` itself checks the layers
against the config.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The device's own archive reader (shipped with the roles): headers checked as they are read.
from ..roles.core_common.module_utils.dunebugger_archive import ArchiveRefused, capped_members, open_archive

MANIFEST = "manifest.json"
MAX_JSON_BYTES = 1024 * 1024
MAX_MEMBERS = 10_000
VERSION_LABEL = "org.opencontainers.image.version"


class NotAnImageArchive(ValueError):
    """The file is not one image saved by `docker save`; the message says why."""


@dataclass(frozen=True)
class ImageArchive:
    image_id: str  # "sha256:<hex>" of the image's config
    references: tuple[str, ...]  # repository:tag names it carries
    labels: Mapping[str, str]

    def tags_of(self, repository: str) -> list[str]:
        """The tags it carries for `repository`."""
        return [tag for name, tag in map(split_reference, self.references) if name == repository and tag]

    @property
    def version_label(self) -> str | None:
        return self.labels.get(VERSION_LABEL)


def split_reference(reference: str) -> tuple[str, str | None]:
    """`host:5000/x/y:1.2.0` -> (`host:5000/x/y`, `1.2.0`); no tag -> (reference, None)."""
    name, _, last = reference.rpartition("/")
    if ":" not in last:
        return reference, None
    image, _, tag = last.partition(":")
    return f"{name}/{image}" if name else image, tag


def read_image_archive(path: Path) -> ImageArchive:
    """The one image `path` holds, or NotAnImageArchive."""
    try:
        with open_archive(path, MAX_MEMBERS) as tar:
            members = {member.name.removeprefix("./"): member for member in capped_members(tar)}
            manifest = _json(tar, members, MANIFEST)
            image = _only_image(manifest)
            config_bytes = _read(tar, members, image["Config"])
    except ArchiveRefused as exc:
        raise NotAnImageArchive(str(exc)) from None
    except (OSError, tarfile.TarError, EOFError) as exc:
        raise NotAnImageArchive(tar_problem(exc)) from None
    return ImageArchive(
        image_id="sha256:" + hashlib.sha256(config_bytes).hexdigest(),
        references=tuple(image.get("RepoTags") or ()),
        labels=_labels(_parse(config_bytes, image["Config"])),
    )


def _labels(config: Any) -> dict[str, str]:
    settings = config.get("config") if isinstance(config, dict) else None
    labels = settings.get("Labels") if isinstance(settings, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {key: value for key, value in labels.items() if isinstance(key, str) and isinstance(value, str)}


def tar_problem(exc: Exception) -> str:
    """Why a file could not be read as a tar archive, in one line."""
    if isinstance(exc, tarfile.ReadError):  # every decompression was tried, and no tar header found
        return "it is not a tar archive (plain, or compressed with gzip, bzip2 or xz)"
    return f"it cannot be read as a tar archive: {' '.join(str(exc).split()) or type(exc).__name__}"


def _only_image(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, list) or not all(isinstance(entry, dict) for entry in manifest):
        raise NotAnImageArchive(f"its {MANIFEST} is not a list of images")
    if len(manifest) != 1:
        raise NotAnImageArchive(
            f"it holds {len(manifest)} images; save only the one to install (docker save IMAGE:TAG)"
        )
    image = manifest[0]
    tags = image.get("RepoTags")
    if not isinstance(image.get("Config"), str) or not (tags is None or _strings(tags)):
        raise NotAnImageArchive(f"its {MANIFEST} does not name the image's config and tags")
    return image


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _json(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> Any:
    return _parse(_read(tar, members, name), name)


def _parse(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except (ValueError, RecursionError):
        raise NotAnImageArchive(f"its {name} is not JSON") from None


def _read(tar: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str) -> bytes:
    member = members.get(name)
    if member is None or not member.isfile():
        raise NotAnImageArchive(f"it has no {name} (a `docker save` archive has one)")
    if member.size > MAX_JSON_BYTES:
        raise NotAnImageArchive(f"its {name} is larger than {MAX_JSON_BYTES} bytes")
    handle = tar.extractfile(member)
    if handle is None:
        raise NotAnImageArchive(f"its {name} cannot be read")
    with handle:
        return handle.read()
