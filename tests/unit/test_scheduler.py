"""The schedule with an injected clock: each `sleep` moves the fake clock forward."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from types import SimpleNamespace

import pytest

from dunebugger_updater.config import Settings
from dunebugger_updater.release.status import ComponentStatus
from dunebugger_updater.results import UpdateResult
from dunebugger_updater.service.scheduler import Scheduler, auto_update_candidates, retry_delay

START = datetime(2026, 3, 10, 12, 0)  # noon


class Enough(Exception):
    """Ends the endless loop after the sleeps a test wants to see."""


class FakeTime:
    def __init__(self, limit: int) -> None:
        self.now = START
        self.sleeps: list[float] = []
        self._limit = limit

    def clock(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        if len(self.sleeps) == self._limit:
            raise Enough
        self.sleeps.append(seconds)
        self.now += timedelta(seconds=seconds)


def status(name="core", current="1.0.0", latest="1.0.1", error=None) -> ComponentStatus:
    return ComponentStatus(name, current, latest, latest != current and error is None, error=error)


class FakeService:
    """What the scheduler uses of UpdaterService; answers are scripted per check."""

    def __init__(self, settings: Settings, answers: list, time: FakeTime) -> None:
        self.updater = SimpleNamespace(settings=settings)
        self._answers = answers
        self._time = time
        self.checks: list[datetime] = []
        self.updates: list[tuple[str, datetime]] = []
        self.current = {"core": "1.0.0"}

    async def check(self, force: bool = False):
        assert force
        self.checks.append(self._time.now)
        answer = self._answers.pop(0) if self._answers else [status(current=self.current["core"])]
        if isinstance(answer, Exception):
            raise answer
        return {s.name: s for s in answer}

    async def versions(self):
        return {"core": status(current=self.current["core"])}

    async def update(self, name: str, *, automatic: bool = False, **_):
        assert automatic
        self.updates.append((name, self._time.now))
        self.current[name] = "1.0.1"
        return UpdateResult(name, True, f"Updated {name} to 1.0.1", "updated", from_version="1.0.0", to_version="1.0.1")


def make(limit: int, answers: list | None = None, **settings_values) -> tuple[Scheduler, FakeService, FakeTime, list]:
    values = dict(initial_check_delay_minutes=5, update_check_interval_hours=24)
    values.update(settings_values)
    settings = dataclasses.replace(Settings(), **values)
    time = FakeTime(limit)
    service = FakeService(settings, answers or [], time)
    sent: list[dict] = []
    scheduler = Scheduler(service, clock=time.clock, sleep=time.sleep, broadcast=sent.append)  # type: ignore[arg-type]
    return scheduler, service, time, sent


async def run(scheduler: Scheduler) -> None:
    with pytest.raises(Enough):
        await scheduler.run()


async def test_initial_delay_then_every_interval():
    scheduler, service, time, sent = make(limit=3)
    await run(scheduler)
    assert time.sleeps == [300.0, 86400.0, 86400.0]
    assert service.checks == [START + timedelta(minutes=5), START + timedelta(minutes=5, hours=24),
                              START + timedelta(minutes=5, hours=48)]
    assert [m["subject"] for m in sent] == ["update_check_result"] * 3
    assert service.updates == []  # autoUpdate is off by default


async def test_failed_checks_retry_sooner_with_backoff_then_settle():
    answers = [RuntimeError("network down"), [status(error="HTTP 502")], RuntimeError("again"), [status()]]
    scheduler, _service, time, _ = make(limit=6, answers=answers, update_check_interval_hours=1)
    await run(scheduler)
    # initial delay, then 1, 2, 4 minutes after three failures, then the hourly interval
    assert time.sleeps == [300.0, 60.0, 120.0, 240.0, 3600.0, 3600.0]
    assert scheduler.failures == 0


def test_backoff_is_capped_by_the_interval():
    assert [retry_delay(n, 600) for n in range(6)] == [600, 60, 120, 240, 480, 600]


async def test_auto_update_inside_the_window_at_once():
    scheduler, service, _time, sent = make(limit=2, auto_update="patch", update_window="11:00-13:00")
    await run(scheduler)
    assert service.updates == [("core", START + timedelta(minutes=5))]
    assert [m["subject"] for m in sent][:2] == ["update_check_result", "update_result"]


async def test_auto_update_waits_for_the_window_and_wakes_when_it_opens():
    scheduler, service, time, _sent = make(limit=3, auto_update="all", update_window="02:00-05:00")
    await run(scheduler)
    first_check = START + timedelta(minutes=5)  # 12:05, the window is closed
    opening = datetime(2026, 3, 11, 2, 0)
    assert service.checks[0] == first_check
    assert service.updates == [("core", opening)]
    # initial delay; sleep to 02:00; the rest of the day until the next check at 12:05
    assert time.sleeps == [300.0, (opening - first_check).total_seconds(), (first_check + timedelta(hours=24) - opening).total_seconds()]
    assert service.checks[1] == first_check + timedelta(hours=24)


async def test_level_decides_which_jumps_happen_by_themselves():
    answers = [[status(latest="2.0.0")], [status(latest="2.0.0")]]
    scheduler, service, _, _ = make(limit=2, answers=answers, auto_update="minor")
    await run(scheduler)
    assert service.updates == []


def test_candidates_skip_errors_and_unavailable():
    statuses = [status("core"), status("scheduler", latest="1.0.0"), status("remote", error="HTTP 404")]
    assert auto_update_candidates(statuses, "all") == ["core"]
    assert auto_update_candidates(statuses, "off") == []
