"""What is installed on this device right now.

core writes a VERSION file into its installation: JSON (`{"version": "1.2.0", ...}`) or
one plain line. A container's version is the tag of its service's image in the compose
file. Anything missing means "not installed", never a crash.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml
from packaging.version import Version

from ..config import ComponentSpec, Settings
from ..environment import child_environment
from ..errors import os_reason
from ..files import FileTooLarge, read_capped
from ..versions import parse_or_none

log = logging.getLogger(__name__)

MAX_VERSION_FILE_BYTES = 64 * 1024
MAX_COMPOSE_FILE_BYTES = 4 * 1024 * 1024


@dataclass(frozen=True)
class InstalledVersion:
    """The running version as text (`None`: not installed), and why when unknown."""

    version: str | None
    detail: str = ""


def read_version_file(path: Path) -> InstalledVersion:
    try:
        data = read_capped(path, MAX_VERSION_FILE_BYTES)
    except FileNotFoundError:
        return InstalledVersion(None, f"not installed ({path} is missing)")
    except FileTooLarge:
        return InstalledVersion(None, f"{path} is too large to be a VERSION file")
    except OSError as exc:
        return InstalledVersion(None, f"cannot read {path}: {os_reason(exc)}")
    text = data.decode("utf-8", errors="replace").strip()
    version = version_from_text(text)
    if not version:
        return InstalledVersion(None, f"{path} holds no version")
    return InstalledVersion(version)


def version_from_text(text: str) -> str | None:
    """The version a VERSION file's text names (JSON with "version", or the first line), or None."""
    if text.startswith("{"):
        try:
            document = json.loads(text)
        except json.JSONDecodeError:
            return None
        value = document.get("version") if isinstance(document, dict) else None
        return value.strip() if isinstance(value, str) and value.strip() else None
    first_line = text.splitlines()[0].strip() if text else ""
    return first_line or None


def image_tag_in_compose(compose_path: Path, service: str) -> InstalledVersion:
    """The tag of `service`'s image in the compose file."""
    try:
        document = yaml.safe_load(read_capped(compose_path, MAX_COMPOSE_FILE_BYTES).decode("utf-8"))
    except FileNotFoundError:
        return InstalledVersion(None, f"not installed ({compose_path} is missing)")
    except OSError as exc:
        return InstalledVersion(None, f"cannot read {compose_path}: {os_reason(exc)}")
    except (UnicodeDecodeError, yaml.YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return InstalledVersion(None, f"cannot read {compose_path}: not valid YAML{where}")
    services = document.get("services") if isinstance(document, dict) else None
    entry = services.get(service) if isinstance(services, dict) else None
    if not isinstance(entry, dict):
        return InstalledVersion(None, f"not installed (no service {service!r} in {compose_path})")
    image = entry.get("image")
    if not isinstance(image, str) or not image:
        return InstalledVersion(None, f"service {service!r} in {compose_path} has no image")
    return InstalledVersion(image_tag(image), "" if image_tag(image) else f"image {image!r} has no tag")


def image_tag(image: str) -> str | None:
    """`ghcr.io/x/y:1.2.0` -> `1.2.0`; a digest or no tag -> None."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


VERSION_LABEL = "org.opencontainers.image.version"
DOCKER_TIMEOUT_SECONDS = 5


def running_container_versions(compose_path: Path) -> dict[str, InstalledVersion]:
    """Version of every running container of the compose project, by service: the
    image tag, else the image's OCI version label. One engine call for all services;
    empty when none runs or the engine cannot be asked."""
    argv = [
        "docker",
        "ps",
        "--filter",
        f"label=com.docker.compose.project.working_dir={compose_path.parent}",
        "--format",
        '{{.Label "com.docker.compose.service"}}\t{{.Image}}\t{{.Label "' + VERSION_LABEL + '"}}',
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=DOCKER_TIMEOUT_SECONDS, env=child_environment()
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.debug("cannot ask the container engine: %s", exc)
        return {}
    versions: dict[str, InstalledVersion] = {}
    for line in done.stdout.splitlines() if done.returncode == 0 else []:
        service, _, rest = line.partition("\t")
        image, _, label = rest.partition("\t")
        version = image_tag(image) or label.strip() or None
        if service and version:
            versions.setdefault(service, InstalledVersion(version))
    return versions


class InstalledVersions:
    """Reads what is installed, asking the container engine at most once."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._running: dict[str, InstalledVersion] | None = None

    def of(self, spec: ComponentSpec) -> InstalledVersion:
        if spec.is_container:
            compose = self._settings.docker_compose_path
            if self._running is None:
                self._running = running_container_versions(compose)
            return self._running.get(spec.service) or image_tag_in_compose(compose, spec.service)
        assert spec.install_path is not None  # config guarantees it for python_app
        return read_version_file(spec.install_path / "VERSION")


def installed_version(settings: Settings, spec: ComponentSpec) -> InstalledVersion:
    return InstalledVersions(settings).of(spec)


# --- core releases kept for rollback (layout of roles/core_common) ----------------------

BACKUP_NAME = re.compile(r"^core-(?P<version>.+)-\d{8}T\d{6}\.tar\.gz$")


def releases_path(spec: ComponentSpec) -> Path:
    """One directory per installed release, beside the install path (core_releases_path)."""
    assert spec.install_path is not None  # config guarantees it for python_app
    return spec.install_path.parent / "releases" / "core"


def previous_release(releases: Path) -> str | None:
    """The release an update replaced, as recorded by the switch; None when none is."""
    try:
        return read_capped(releases / ".previous", MAX_VERSION_FILE_BYTES).decode("utf-8").strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def retained_releases(releases: Path, backups: Path) -> list[str]:
    """Versions a rollback can go to: release directories kept, and backups taken."""
    found = {
        entry.name
        for entry in _entries(releases)
        if entry.is_dir() and not entry.name.startswith(".") and not entry.name.endswith(".partial")
    }
    found |= {match["version"] for entry in _entries(backups) if (match := BACKUP_NAME.match(entry.name))}
    return _by_version(found)


# --- compose backups kept for rollback (layout of roles/container_update) -----------------


def compose_backup_versions(backups: Path, service: str) -> list[str]:
    """Versions of `service` that a compose backup was taken of (compose-<service>-<stamp>-<version>.yml)."""
    name = re.compile(rf"^compose-{re.escape(service)}-\d{{8}}T\d{{6}}-(?P<version>.+)\.yml$")
    return _by_version({match["version"] for entry in _entries(backups) if (match := name.match(entry.name))})


def _by_version(found: set[str]) -> list[str]:
    """Versions in order, then whatever is not a version, by name."""
    versions = sorted(
        (text for text in found if parse_or_none(text)), key=lambda text: parse_or_none(text) or Version("0")
    )
    return versions + sorted(found.difference(versions))


def _entries(directory: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except OSError:
        return []
