"""UpdaterService with a fake updater: shared checks, announcements once per version,
busy answers, shutdown refusal, and which results become notifications."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from dunebugger_updater.config import Settings
from dunebugger_updater.errors import Busy, ConfigError
from dunebugger_updater.release.status import ComponentStatus
from dunebugger_updater.results import UpdateResult
from dunebugger_updater.service.notify import Notifier, _headline
from dunebugger_updater.service.updater_service import UpdaterService


class FakeUpdater:
    def __init__(self, state: Path) -> None:
        self.settings = dataclasses.replace(Settings(), state_path=state, components={"core": object()})
        self.checks = 0
        self.gate = asyncio.Event()
        self.latest = "1.1.0"

    async def check_updates(self, force: bool = False):
        self.checks += 1
        await asyncio.sleep(0.01)
        return {"core": ComponentStatus("core", "1.0.0", self.latest, True, release_notes="n")}

    async def update_component(self, name, dry_run=False, version=None, *, source=None):
        if self.gate.is_set():
            raise Busy("busy: update of core (pid 1) is in progress on this device")
        self.gate.set()
        await asyncio.sleep(0.05)
        self.gate.clear()
        return UpdateResult(name, True, "Updated core to 1.1.0", "updated", from_version="1.0.0", to_version="1.1.0")


class RecordingNotifier(Notifier):
    def __init__(self) -> None:
        super().__init__(["json://unused"])
        self.sent: list[tuple[str, str]] = []

    def send(self, title: str, body: str, kind: str = "info") -> None:
        self.sent.append((title, kind))


def make(tmp_path: Path) -> tuple[UpdaterService, FakeUpdater, RecordingNotifier, list]:
    updater = FakeUpdater(tmp_path)
    notifier = RecordingNotifier()
    sent: list = []
    return UpdaterService(updater, notifier=notifier, broadcast=sent.append), updater, notifier, sent  # type: ignore[arg-type]


async def test_concurrent_checks_share_one_lookup_and_announce_once(tmp_path):
    service, updater, notifier, sent = make(tmp_path)
    results = await asyncio.gather(*(service.check(force=True) for _ in range(5)))
    assert updater.checks == 1 and all(r["core"].latest_version == "1.1.0" for r in results)
    await service.check(force=True)
    assert [m["subject"] for m in sent] == ["update_available"]
    assert sent[0]["body"] == {"component": "core", "current": "1.0.0", "latest": "1.1.0", "release_notes": "n"}
    assert notifier.sent == [("DuneBugger: core 1.1.0 available", "info")]

    again, _, again_notifier, again_sent = make(tmp_path)  # a restart remembers
    again.updater.latest = "1.1.0"
    await again.check()
    assert again_sent == [] and again_notifier.sent == []
    again.updater.latest = "1.2.0"
    await again.check()
    assert [m["body"]["latest"] for m in again_sent] == ["1.2.0"]


async def test_second_update_is_busy_and_shutdown_refuses(tmp_path):
    service, _, notifier, _ = make(tmp_path)
    first, second = await asyncio.gather(service.update("core"), service.update("core", dry_run=True))
    assert first.success and (second.success, second.outcome, second.dry_run) == (False, "busy", True)
    assert notifier.sent == [("DuneBugger: core updated to 1.1.0", "success")]
    with pytest.raises(ConfigError, match="unknown component 'toaster'"):
        await service.update("toaster")
    service.stop_accepting()
    refused = await service.update("core")
    assert refused.outcome == "busy" and "shutting down" in refused.message
    assert await service.wait_idle(1)


async def test_a_cancelled_caller_does_not_abandon_the_update(tmp_path):
    service, updater, _, _ = make(tmp_path)
    caller = asyncio.ensure_future(service.update("core"))
    await asyncio.sleep(0.01)
    caller.cancel()
    assert service.busy
    assert await service.wait_idle(1) and not updater.gate.is_set()


@pytest.mark.parametrize(("outcome", "success", "automatic", "expected"), [
    ("updated", True, False, ("core updated to 1.2.0", "success")),
    ("rolled_back", False, False, ("core update to 1.2.0 failed and was rolled back", "warning")),
    ("rolled_back", True, False, ("core rolled back to 1.2.0", "info")),
    ("failed", False, False, ("core update failed", "failure")),
    ("recovered", True, False, ("core recovered after an interrupted run", "warning")),
    ("refused", False, True, ("core automatic update refused", "warning")),
    ("refused", False, False, None),
    ("dry_run", True, False, None),
    ("up_to_date", True, True, None),
    ("busy", False, False, None),
])
def test_which_results_are_news(outcome, success, automatic, expected):
    result = UpdateResult("core", success, "text", outcome, from_version="1.1.0", to_version="1.2.0")
    assert _headline(result, automatic) == expected
