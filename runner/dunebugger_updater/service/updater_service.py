"""The long-running updater: one `ComponentUpdater` shared by every client, the
scheduler and the page, plus what only a service does:

- concurrent check requests share one lookup instead of each asking GitHub;
- a new version is announced once (an `update_available` message and a notification),
  remembered under statePath so a restart does not announce it again;
- an update that finds the device lock taken answers "busy" at once, never queues;
- every finished update or rollback is told to people (notify) and to every client;
- at shutdown no new work starts and running work is waited for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .. import messages
from ..device.history import HistoryEntry
from ..errors import Busy
from ..release.local import LocalSource
from ..release.status import ComponentStatus
from ..results import UpdateResult
from ..statedir import StateDir
from ..statefiles import read_json, write_json
from ..updater import ComponentUpdater
from .notify import Notifier

log = logging.getLogger(__name__)

Broadcast = Callable[[dict[str, Any]], None]
T = TypeVar("T")


def update_available(status: ComponentStatus) -> dict[str, Any]:
    return messages.message(
        "update_available",
        {
            "component": status.name,
            "current": status.current_version,
            "latest": status.latest_version,
            "release_notes": status.release_notes,
        },
    )


class SeenVersions:
    """The newest version already announced per component (statePath/announced.json)."""

    FILE = "announced.json"

    def __init__(self, state: StateDir) -> None:
        self._state = state
        stored = read_json(state, self.FILE, {})
        self._seen: dict[str, str] = stored if isinstance(stored, dict) else {}

    def is_new(self, component: str, version: str) -> bool:
        return self._seen.get(component) != version

    def remember(self, component: str, version: str) -> None:
        self._seen[component] = version
        try:
            write_json(self._state, self.FILE, self._seen)
        except OSError as exc:
            log.warning("cannot remember announced versions in %s: %s", self._state.path, exc)


class UpdaterService:
    def __init__(
        self,
        updater: ComponentUpdater,
        *,
        notifier: Notifier | None = None,
        broadcast: Broadcast = lambda message: None,
    ) -> None:
        self.updater = updater
        self.notifier = notifier or Notifier(())
        self.broadcast = broadcast
        self._seen = SeenVersions(StateDir(updater.settings.state_path))
        self._check: asyncio.Task[dict[str, ComponentStatus]] | None = None
        self._accepting = True
        self._running = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- queries ---------------------------------------------------------------------

    async def check(self, force: bool = False) -> dict[str, ComponentStatus]:
        """Look up releases; a check already under way is shared, not repeated."""
        if self._check is None or self._check.done():
            self._check = asyncio.get_running_loop().create_task(self._check_and_announce(force))
        return await asyncio.shield(self._check)

    async def versions(self) -> dict[str, ComponentStatus]:
        # In a thread: reading what runs may ask the container engine (a subprocess).
        return await asyncio.to_thread(self.updater.get_all_versions)

    async def history(self, limit: int | None) -> list[HistoryEntry]:
        return await asyncio.to_thread(self.updater.get_history, limit)

    # --- operations ------------------------------------------------------------------

    async def update(
        self,
        component: str,
        *,
        dry_run: bool = False,
        version: str | None = None,
        source: LocalSource | None = None,
        automatic: bool = False,
    ) -> UpdateResult:
        """Update, or an `update_result` that says why not (busy, shutting down).
        Unknown components and bad version texts raise (ConfigError, BadRequest)."""
        return await self._operate(
            component,
            dry_run,
            automatic,
            lambda: self.updater.update_component(component, dry_run=dry_run, version=version, source=source),
        )

    async def rollback(self, component: str, to: str | None = None) -> UpdateResult:
        return await self._operate(component, False, False, lambda: self.updater.rollback_component(component, to=to))

    async def recover(self) -> UpdateResult | None:
        """Settle a run a crash cut off (once, at start); a CLI run holding the lock is left alone."""
        operation = asyncio.ensure_future(self._tracked(self.updater.recover()))
        try:
            result = await asyncio.shield(operation)  # like updates: never abandoned half-way
        except Busy as exc:
            log.warning("recovery at start skipped: %s", exc)
            return None
        if result is not None:
            log.warning("%s", result.message)
            self.notifier.update_finished(result)
        return result

    async def _operate(
        self, component: str, dry_run: bool, automatic: bool, run: Callable[[], Awaitable[UpdateResult]]
    ) -> UpdateResult:
        self.updater.settings.component(component)  # unknown component: ConfigError before anything
        if not self._accepting:
            return UpdateResult.busy(
                component, "busy: the updater service is shutting down; try again when it is back", dry_run=dry_run
            )
        # Shielded: a client that goes away, or a cancelled scheduler, must never
        # abandon a playbook half-way (the device lock would be dropped while it runs).
        operation = asyncio.ensure_future(self._counted(run, automatic))
        try:
            return await asyncio.shield(operation)
        except Busy as exc:
            return UpdateResult.busy(component, str(exc), dry_run=dry_run)

    async def _counted(self, run: Callable[[], Awaitable[UpdateResult]], automatic: bool) -> UpdateResult:
        result = await self._tracked(run())
        self.notifier.update_finished(result, automatic=automatic)
        return result

    async def _tracked(self, work: Awaitable[T]) -> T:
        """Count running work, so that shutdown can wait for it."""
        self._running += 1
        self._idle.clear()
        try:
            return await work
        finally:
            self._running -= 1
            if self._running == 0:
                self._idle.set()

    # --- shutdown --------------------------------------------------------------------

    def stop_accepting(self) -> None:
        self._accepting = False

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait for running updates to finish; False when `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    @property
    def busy(self) -> bool:
        return self._running > 0

    # --- announcements ---------------------------------------------------------------

    async def _check_and_announce(self, force: bool) -> dict[str, ComponentStatus]:
        statuses = await self.updater.check_updates(force=force)
        for status in statuses.values():
            if (
                status.update_available
                and status.latest_version
                and self._seen.is_new(status.name, status.latest_version)
            ):
                log.info("%s %s is available (running %s)", status.name, status.latest_version, status.current_version)
                self._seen.remember(status.name, status.latest_version)
                self.broadcast(update_available(status))
                self.notifier.new_version(
                    status.name, status.current_version, status.latest_version, status.release_notes
                )
        return statuses
