"""`ComponentUpdater`: the programmatic face of the updater, as in the seed's example.

updater = ComponentUpdater(settings)
results = await updater.check_updates(force=True)
result = await updater.update_component("core", dry_run=True)
versions = updater.get_all_versions()
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from . import messages
from .config import Settings
from .device.events import Progress
from .device.history import HistoryEntry
from .device.operations import DeviceOperations
from .release.checker import Clock, UpdateChecker, local_now
from .release.local import LocalSource
from .release.status import ComponentStatus
from .results import UpdateResult

MessageListener = Callable[[dict[str, Any]], None]


class ComponentUpdater:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = local_now,
    ) -> None:
        self.settings = settings
        self._listeners: list[MessageListener] = []
        self._checker = UpdateChecker(settings, transport=transport, clock=clock)
        self._operations = DeviceOperations(settings, transport=transport, clock=clock, on_progress=self._progress)

    def add_listener(self, listener: MessageListener) -> None:
        """Receive `updater_progress` messages while updates and rollbacks run."""
        self._listeners.append(listener)

    async def check_updates(self, force: bool = False) -> dict[str, ComponentStatus]:
        """Current and newest version of every component (GitHub is asked when the
        last answer is older than the check interval, or always when forced)."""
        return await self._checker.check(force=force)

    def get_all_versions(self) -> dict[str, ComponentStatus]:
        """Installed versions now, with the newest releases the last check found."""
        return self._checker.known()

    async def update_component(
        self, name: str, dry_run: bool = False, version: str | None = None, *, source: LocalSource | None = None
    ) -> UpdateResult:
        """Update `name` to the newest release (or `version`); never to an older one.
        With `source`, the release is the one in those files on this device (no network)."""
        return await self._operations.update(name, dry_run=dry_run, version=version, source=source)

    async def rollback_component(self, name: str, to: str | None = None) -> UpdateResult:
        """Go back to the previous release, or to a retained version `to`."""
        return await self._operations.rollback(name, to=to)

    async def recover(self) -> UpdateResult | None:
        """Settle a run cut off by a crash or power cut (None: nothing to settle)."""
        return await self._operations.recover()

    def get_history(self, limit: int | None = None) -> list[HistoryEntry]:
        return self._operations.history.entries(limit)

    def _progress(self, component: str, run_id: str, action: str, step: Progress) -> None:
        message = messages.progress(component, run_id, action, step.step, step.task, step.done, step.total)
        for listener in self._listeners:
            listener(message)
