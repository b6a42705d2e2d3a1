"""Request checking and dispatch of the WebSocket API, against a recording fake service."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from dunebugger_updater.config import Settings, load_settings
from dunebugger_updater.device.history import HistoryEntry
from dunebugger_updater.errors import BadRequest
from dunebugger_updater.release.local import LocalSource
from dunebugger_updater.release.status import ComponentStatus
from dunebugger_updater.results import UpdateResult
from dunebugger_updater.service.api import Api, ApiError, Request, component_name, parse_request


class FakeService:
    def __init__(self, settings: Settings) -> None:
        self.updater = SimpleNamespace(settings=settings)
        self.calls: list[tuple] = []

    async def check(self, force: bool = False):
        self.calls.append(("check", force))
        return {"core": ComponentStatus("core", "1.0.0", "1.1.0", True, release_notes="notes")}

    async def versions(self):
        self.calls.append(("versions",))
        return {"core": ComponentStatus("core", "1.0.0", None, False)}

    async def history(self, limit):
        self.calls.append(("history", limit))
        return [HistoryEntry("r1", "update", "core", "1.0.0", "1.1.0", "updated", True, "ok", "t0", "t1")]

    async def update(self, component, *, dry_run=False, version=None, source=None):
        self.calls.append(("update", component, dry_run, version) + ((source,) if source else ()))
        if version == "bad":
            raise BadRequest("--version/--to: 'bad' is not a version")
        return UpdateResult(component, True, "done", "dry_run" if dry_run else "updated", dry_run=dry_run)

    async def rollback(self, component, to=None):
        self.calls.append(("rollback", component, to))
        return UpdateResult(component, True, "back", "rolled_back", to_version=to)


@pytest.fixture
def service(tmp_path, monkeypatch) -> FakeService:
    monkeypatch.chdir(tmp_path)
    return FakeService(load_settings(None, environ={}))


async def ask(service: FakeService, request) -> dict:
    raw = request if isinstance(request, (str, bytes)) else json.dumps(request)
    return await Api(service).handle(raw)  # type: ignore[arg-type]


async def test_seed_check_updates(service):
    reply = await ask(service, {"subject": "updater.check_updates", "source": "frontend", "body": {"force": True}})
    assert reply["subject"] == "update_check_result" and reply["source"] == "controller"
    assert reply["body"]["components"]["core"]["latest"] == "1.1.0"
    assert service.calls == [("check", True)]


async def test_seed_perform_update_with_dry_run_and_version(service):
    reply = await ask(service, {"subject": "updater.perform_update", "body": {"component": "core", "dry_run": True}})
    assert reply["subject"] == "update_result"
    assert (reply["body"]["component"], reply["body"]["dry_run"], reply["body"]["success"]) == ("core", True, True)
    reply = await ask(service, {"subject": "updater.perform_update", "body": {"component": "core", "version": "1.1.0"}})
    assert (reply["body"]["outcome"], reply["body"]["dry_run"]) == ("updated", False)
    assert service.calls == [("update", "core", True, None), ("update", "core", False, "1.1.0")]


@pytest.mark.parametrize("body", ["core", "dunebugger-core", " dunebugger-core "])
async def test_remote_form_with_plain_string_body(service, body):
    reply = await ask(service, {"subject": "updater.update", "body": body})
    assert (reply["subject"], reply["body"]["component"], reply["body"]["outcome"]) == ("update_result", "core", "updated")
    assert service.calls == [("update", "core", False, None)]


async def test_rollback_versions_history(service):
    rollback = await ask(service, {"subject": "updater.rollback", "body": {"component": "core", "to": "1.0.0"}})
    back = rollback["body"]
    assert (rollback["subject"], back["outcome"], back["to_version"]) == ("update_result", "rolled_back", "1.0.0")
    versions = await ask(service, {"subject": "updater.get_versions"})
    core = versions["body"]["components"]["core"]
    assert (versions["subject"], core["current"], core["latest"]) == ("versions_result", "1.0.0", None)
    history = await ask(service, {"subject": "updater.get_history", "body": {"limit": 5}})
    assert history["subject"] == "update_history" and history["body"]["entries"][0]["run_id"] == "r1"
    assert service.calls == [("rollback", "core", "1.0.0"), ("versions",), ("history", 5)]


# The one bad request that passes the API's checks: the service itself refuses the version.
REFUSED_BY_THE_SERVICE = {"subject": "updater.perform_update", "body": {"component": "core", "version": "bad"}}


@pytest.mark.parametrize(("request_", "subject", "text"), [
    ("not json", None, "message is not JSON"),
    (b"\xff\xfe", None, "not UTF-8"),
    ("[1, 2]", None, "must be a JSON object, not an array"),
    ('"updater.update"', None, "not a string"),
    ({"body": {}}, None, "has no 'subject'"),
    ({"subject": 7}, None, "has no 'subject'"),
    ({"subject": "updater.format_disk"}, "updater.format_disk", "unknown subject 'updater.format_disk'"),
    ({"subject": "updater.perform_update"}, "updater.perform_update", "'body' must be a JSON object, not null"),
    ({"subject": "updater.perform_update", "body": {}}, "updater.perform_update", "'body.component' is required"),
    ({"subject": "updater.perform_update", "body": {"component": "toaster"}}, "updater.perform_update",
     "unknown component 'toaster' (known: core, scheduler, remote)"),
    ({"subject": "updater.perform_update", "body": {"component": 1}}, "updater.perform_update",
     "'body.component' must be a string, not a number"),
    ({"subject": "updater.perform_update", "body": {"component": "core", "dry_run": "yes"}}, "updater.perform_update",
     "'body.dry_run' must be true or false, not a string"),
    (REFUSED_BY_THE_SERVICE, "updater.perform_update", "'bad' is not a version"),
    ({"subject": "updater.perform_update", "body": {"component": "x" * 500}}, "updater.perform_update",
     "1 to 100 characters"),
    ({"subject": "updater.check_updates", "body": {"force": 1}}, "updater.check_updates", "'body.force' must be true or false"),
    ({"subject": "updater.check_updates", "body": []}, "updater.check_updates", "'body' must be a JSON object, not an array"),
    ({"subject": "updater.get_history", "body": {"limit": True}}, "updater.get_history", "must be a whole number"),
    ({"subject": "updater.get_history", "body": {"limit": 0}}, "updater.get_history", "between 1 and 1000"),
    ({"subject": "updater.update", "body": {"component": "core"}}, "updater.update", "component name as a string"),
    ({"subject": "updater.update", "body": "dunebugger-toaster"}, "updater.update", "unknown component 'toaster'"),
    ({"subject": "updater.rollback", "body": {"component": "core", "to": 1.5}}, "updater.rollback",
     "'body.to' must be a string, not a number"),
])
async def test_bad_requests_get_an_error_naming_the_problem(service, request_, subject, text):
    reply = await ask(service, request_)
    assert reply["subject"] == "error" and reply["source"] == "controller"
    assert reply["body"]["request"] == subject
    assert text in reply["body"]["message"]
    assert service.calls == ([("update", "core", False, "bad")] if request_ is REFUSED_BY_THE_SERVICE else [])


def test_parse_and_names():
    assert parse_request('{"subject": "a", "body": 1}') == Request("a", 1)
    with pytest.raises(ApiError, match="message has no 'subject'") as refused:
        parse_request("{}")
    assert refused.value.request is None
    assert component_name("dunebugger-remote") == "remote" and component_name("core") == "core"


async def test_perform_update_from_a_bundle_under_bundle_path(tmp_path):
    bundles = tmp_path / "bundles"
    service = FakeService(dataclasses.replace(load_settings(None, environ={}), bundle_path=bundles))
    for name, path in (("core-1.2.0", bundles / "core-1.2.0"), ("/media/usb/b", Path("/media/usb/b"))):
        service.calls.clear()
        reply = await ask(service, {"subject": "updater.perform_update", "body": {"component": "core", "bundle": name}})
        assert (reply["subject"], reply["body"]["outcome"]) == ("update_result", "updated")
        # Whether the path really leads inside bundlePath is the update's to decide (and record).
        assert service.calls == [("update", "core", False, None, LocalSource(path, within=bundles))]


@pytest.mark.parametrize(("bundle", "bundle_path", "expect"), [
    ("b1", None, "updates from a bundle are off on this device: set bundlePath in [Updater]"),
    ("b\x001", Path("/srv/bundles"), "'body.bundle' must not contain a NUL character"),
    (42, Path("/srv/bundles"), "'body.bundle' must be a string"),
])
async def test_a_bundle_the_service_cannot_take_is_an_error(bundle, bundle_path, expect):
    service = FakeService(dataclasses.replace(load_settings(None, environ={}), bundle_path=bundle_path))
    reply = await ask(service, {"subject": "updater.perform_update", "body": {"component": "core", "bundle": bundle}})
    assert (reply["subject"], reply["body"]["request"]) == ("error", "updater.perform_update")
    assert expect in reply["body"]["message"] and service.calls == []
