"""Update checks: look up the newest release of every component at once, remember
the answers under statePath, and combine them with what is installed."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import httpx

from ..config import ComponentSpec, Settings
from ..device.installed import InstalledVersion, InstalledVersions
from ..errors import ReleaseLookupError
from ..statedir import StateDir
from ..statefiles import read_json, write_json
from ..versions import NotAVersion, parse_version
from .releases import Release, ReleaseClient, client_for
from .status import ComponentStatus, component_status

log = logging.getLogger(__name__)

LAST_CHECK_FILE = "last-check.json"

Clock = Callable[[], datetime]


def local_now() -> datetime:
    return datetime.now().replace(microsecond=0)


class UpdateChecker:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = local_now,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._state = StateDir(settings.state_path)

    def release_client(self) -> ReleaseClient:
        return client_for(self._settings, self._transport)

    async def check(self, *, force: bool = False) -> dict[str, ComponentStatus]:
        """Statuses of all components; looks up those whose last answer is stale (all when forced)."""
        self._state.ready()  # a check remembers its answers: a statePath we cannot use stops it first
        stored = self._stored()
        now = self._clock()
        specs = self._settings.components.values()
        stale = [spec for spec in specs if force or not self._is_fresh(self._answer(stored, spec), now)]
        if stale:
            async with self.release_client() as client:
                found = await asyncio.gather(*(self._look_up(client, spec) for spec in stale))
            stamp = now.isoformat()
            for spec, (release, error) in zip(stale, found, strict=True):
                stored[spec.name] = {**_entry(release, error, stamp), "question": self._question(spec)}
            self._save(stored)
        # Reading installed versions may ask the container engine: off the event loop.
        return await asyncio.to_thread(self._statuses, stored)

    def known(self) -> dict[str, ComponentStatus]:
        """Installed versions now, with what the last check found upstream."""
        return self._statuses(self._stored())

    def _statuses(self, stored: dict[str, Any]) -> dict[str, ComponentStatus]:
        installed = InstalledVersions(self._settings)
        return {
            spec.name: self._status(spec, installed.of(spec), self._answer(stored, spec))
            for spec in self._settings.components.values()
        }

    def _question(self, spec: ComponentSpec) -> dict[str, Any]:
        """What a stored answer answered: asked elsewhere (another API, account or repo)
        or for another channel, it says nothing about the release asked for now."""
        return {
            "api": self._settings.github_api_url,
            "repo": spec.repo,
            "prerelease": self._settings.include_prerelease,
        }

    def _answer(self, stored: dict[str, Any], spec: ComponentSpec) -> dict[str, Any] | None:
        """The stored answer for `spec`, if it answered the question asked now."""
        entry = stored.get(spec.name)
        return entry if isinstance(entry, dict) and entry.get("question") == self._question(spec) else None

    async def _look_up(self, client: ReleaseClient, spec: ComponentSpec) -> tuple[Release | None, str | None]:
        try:
            release = await client.latest(spec.name, spec.repo, include_prerelease=self._settings.include_prerelease)
        except ReleaseLookupError as exc:
            log.info("update check failed: %s", exc)  # the status carries it: said once, by the caller
            return None, exc.reason
        return release, None

    def _status(
        self, spec: ComponentSpec, installed: InstalledVersion, entry: dict[str, Any] | None
    ) -> ComponentStatus:
        if not entry:
            return component_status(spec.name, installed, None, last_checked=None)
        return component_status(
            spec.name,
            installed,
            _release_from(entry),
            last_checked=entry.get("last_checked"),
            error=entry.get("error"),
        )

    def _is_fresh(self, entry: dict[str, Any] | None, now: datetime) -> bool:
        if not entry or entry.get("error") or not entry.get("last_checked"):
            return False
        try:
            checked = datetime.fromisoformat(entry["last_checked"])
        except (TypeError, ValueError):
            return False
        return now - checked < timedelta(hours=self._settings.update_check_interval_hours)

    def _stored(self) -> dict[str, Any]:
        stored = read_json(self._state, LAST_CHECK_FILE, {})
        return stored if isinstance(stored, dict) else {}

    def _save(self, stored: dict[str, Any]) -> None:
        try:
            write_json(self._state, LAST_CHECK_FILE, stored)
        except OSError as exc:
            log.warning("cannot save check results in %s: %s", self._state.path, exc)


def _entry(release: Release | None, error: str | None, stamp: str) -> dict[str, Any]:
    if release is None:
        return {"error": error, "last_checked": stamp}
    return {"tag": release.tag, "notes": release.notes, "prerelease": release.prerelease, "last_checked": stamp}


def _release_from(entry: dict[str, Any]) -> Release | None:
    tag = entry.get("tag")
    if not isinstance(tag, str):
        return None
    try:
        version = parse_version(tag)
    except NotAVersion:
        return None
    notes = entry.get("notes")
    return Release(
        tag=tag,
        version=version,
        notes=notes if isinstance(notes, str) else None,
        prerelease=entry.get("prerelease") is True,
        published_at=None,
        assets=(),
    )
