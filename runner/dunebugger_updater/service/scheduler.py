"""Periodic update checks and automatic updates.

    start ─ initialCheckDelayMinutes ─> check ─┬─ ok ──── updateCheckIntervalHours ──> check ...
                                               └─ failed ─ 1, 2, 4, 8 ... minutes ───> check ...
                                                           (never longer than the interval)

After each check the results go to every client; components whose new release the
`autoUpdate` level allows are updated, but only inside the `updateWindow`. Updates found
outside it wait, and the scheduler wakes when the window opens (if that is before the
next check). A check "failed" when it raised or any component's lookup failed.

The clock and the sleep are injected, so tests drive hours of schedule in microseconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from .. import messages
from ..errors import UpdaterError
from ..release.checker import Clock, local_now
from ..release.status import ComponentStatus
from . import policy
from .updater_service import UpdaterService

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
RETRY_FIRST_SECONDS = 60.0


def retry_delay(failures: int, interval_seconds: float, first: float = RETRY_FIRST_SECONDS) -> float:
    """Seconds before the next try after `failures` failed checks in a row."""
    if failures <= 0:
        return interval_seconds
    return min(interval_seconds, first * 2 ** (failures - 1))


def auto_update_candidates(statuses: Iterable[ComponentStatus], level: str) -> list[str]:
    """Components whose available release `level` allows the service to install by itself."""
    return [
        s.name
        for s in statuses
        if s.update_available and not s.error and policy.allows(level, s.current_version, s.latest_version)
    ]


class Scheduler:
    def __init__(
        self,
        service: UpdaterService,
        *,
        clock: Clock = local_now,
        sleep: Sleep = asyncio.sleep,
        broadcast: Callable[[dict[str, Any]], None] = lambda message: None,
    ) -> None:
        settings = service.updater.settings
        self._service = service
        self._clock = clock
        self._sleep = sleep
        self._broadcast = broadcast
        self._level = settings.auto_update
        self._window = policy.parse_window(settings.update_window)
        self._initial_delay = settings.initial_check_delay_minutes * 60.0
        self._interval = settings.update_check_interval_hours * 3600.0
        self.failures = 0
        self.waiting: list[str] = []  # allowed updates waiting for the window

    async def run(self) -> None:
        """Check forever (cancel the task to stop it)."""
        log.info(
            "first update check in %.0f s, then every %.0f h; autoUpdate=%s, window %s",
            self._initial_delay,
            self._interval / 3600,
            self._level,
            self._window,
        )
        await self._sleep(self._initial_delay)
        while True:
            ok = await self.check_once()
            self.failures = 0 if ok else self.failures + 1
            delay = retry_delay(self.failures, self._interval)
            if not ok:
                log.warning("update check failed (%d in a row); next try in %.0f s", self.failures, delay)
            await self._wait(self._clock() + timedelta(seconds=delay))

    async def check_once(self) -> bool:
        """One periodic check, its broadcast and the automatic updates it allows."""
        try:
            statuses = await self._service.check(force=True)
        except Exception:  # a check must never kill the schedule
            log.exception("update check raised")
            return False
        self._broadcast(messages.check_result(statuses))
        self.waiting = auto_update_candidates(statuses.values(), self._level)
        await self._apply_if_open()
        return not any(status.error for status in statuses.values())

    async def _wait(self, next_check: datetime) -> None:
        """Sleep until `next_check`, waking at the window's opening for waiting updates."""
        while True:
            now = self._clock()
            if self.waiting:
                opening = self._window.next_opening(now)
                if opening < next_check:
                    await self._sleep(max((opening - now).total_seconds(), 0.0))
                    await self._refresh_waiting()
                    await self._apply_if_open()
                    continue
            remaining = (next_check - now).total_seconds()
            if remaining > 0:
                await self._sleep(remaining)
            return

    async def _refresh_waiting(self) -> None:
        # The device may have been updated by hand while we waited.
        self.waiting = auto_update_candidates((await self._service.versions()).values(), self._level)

    async def _apply_if_open(self) -> None:
        if not self.waiting:
            return
        if not self._window.contains(self._clock()):
            log.info("automatic update of %s waits for the update window %s", ", ".join(self.waiting), self._window)
            return
        names, self.waiting = self.waiting, []
        for name in names:
            await self._auto_update(name)

    async def _auto_update(self, name: str) -> None:
        log.info("automatic update of %s (autoUpdate=%s)", name, self._level)
        try:
            result = await self._service.update(name, automatic=True)
        except UpdaterError as exc:  # one component's problem never stops the others
            log.warning("automatic update of %s not possible: %s", name, exc)
            return
        self._broadcast(messages.update_result(result))
        # A "busy" answer is not retried here: the next check finds the update again.
