"""What a check knows about one component: installed version, newest release, and
whether the one should replace the other."""

from __future__ import annotations

from dataclasses import dataclass

from ..device.installed import InstalledVersion
from ..versions import NotAVersion, is_newer, parse_version
from .releases import Release


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    current_version: str | None
    latest_version: str | None
    update_available: bool
    release_notes: str | None = None
    last_checked: str | None = None
    error: str | None = None
    detail: str = ""  # why the current version is unknown, or why no update is offered
    latest_tag: str | None = None

    @property
    def installed(self) -> bool:
        return self.current_version is not None


def component_status(
    name: str,
    installed: InstalledVersion,
    release: Release | None,
    *,
    last_checked: str | None,
    error: str | None = None,
) -> ComponentStatus:
    """Combine what is installed with what was found upstream."""
    available, detail = _update_available(installed, release)
    return ComponentStatus(
        name=name,
        current_version=installed.version,
        latest_version=release.version_text if release else None,
        update_available=available,
        release_notes=release.notes if release else None,
        last_checked=last_checked,
        error=error,
        detail=detail,
        latest_tag=release.tag if release else None,
    )


def _update_available(installed: InstalledVersion, release: Release | None) -> tuple[bool, str]:
    if installed.version is None:
        return False, installed.detail or "not installed"
    if release is None:
        return False, ""
    try:
        current = parse_version(installed.version)
    except NotAVersion:
        return False, f"running version {installed.version!r} cannot be compared"
    return is_newer(release.version, current), ""
