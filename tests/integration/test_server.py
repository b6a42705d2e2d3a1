"""The service for real: a server on a free loopback port, real `websockets` clients,
real playbook runs on the sandbox device, and the `serve` command as a process."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from dunebugger_updater.demo import DemoDevice, free_port
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.service.security import AccessRules
from dunebugger_updater.service.server import RATE_BURST, RATE_PER_SECOND, SOFT_MAX_BYTES, UpdaterServer
from support.cli import cli_argv, cli_environment, run_cli
from support.receivers import MailBox, Webhook

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]


@pytest.fixture
def device(tmp_path: Path, github: FakeGitHub) -> Iterator[DemoDevice]:
    sandbox = DemoDevice(tmp_path / "device", github)
    for repo in ("marco-svitol/dunebugger-scheduler", "marco-svitol/dunebugger-remote"):
        github.add_release(repo, "v1.0.0", body="container release")
    sandbox.publish("1.1.0")
    sandbox.start()
    yield sandbox
    sandbox.close()


@pytest.fixture
async def server(device: DemoDevice) -> AsyncIterator[UpdaterServer]:
    settings = dataclasses.replace(device.settings(), serve_port=free_port())
    running = UpdaterServer(settings, scheduler=False)
    await running.start()
    yield running
    await running.stop(grace_seconds=60)


def ws_url(server: UpdaterServer) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


async def ask(ws: ClientConnection, request: Any, expect: str | None = None, timeout: float = 30) -> dict[str, Any]:
    await ws.send(request if isinstance(request, (str, bytes)) else json.dumps(request))
    return await until(ws, expect, timeout) if expect else json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def until(ws: ClientConnection, subject: str, timeout: float = 60, seen: list | None = None) -> dict[str, Any]:
    """The next message with `subject` (others go to `seen`)."""
    async with asyncio.timeout(timeout):
        while True:
            message = json.loads(await ws.recv())
            if message["subject"] == subject:
                return message
            if seen is not None:
                seen.append(message)


async def test_every_read_subject(server):
    async with connect(ws_url(server)) as ws:
        check = await ask(ws, {"subject": "updater.check_updates", "source": "frontend", "body": {"force": True}},
                          "update_check_result")
        core = check["body"]["components"]["core"]
        assert (core["current"], core["latest"], core["update_available"]) == ("1.0.0", "1.1.0", True)
        assert core["release_notes"] == "Sample app 1.1.0"

        versions = await ask(ws, {"subject": "updater.get_versions"}, "versions_result")
        assert versions["source"] == "controller"
        assert versions["body"]["components"]["core"]["latest"] == "1.1.0"  # cached by the check

        dry = await ask(ws, {"subject": "updater.perform_update", "body": {"component": "core", "dry_run": True}},
                        "update_result")
        assert dry["body"]["success"] and dry["body"]["dry_run"] and dry["body"]["outcome"] == "dry_run"

        history = await ask(ws, {"subject": "updater.get_history", "body": {"limit": 5}}, "update_history")
        assert [e["outcome"] for e in history["body"]["entries"]] == ["dry_run"]

        back = await ask(ws, {"subject": "updater.rollback", "body": {"component": "core", "to": "0.1.0"}},
                         "update_result")
        assert back["body"]["success"] is False and "0.1.0" in back["body"]["message"]


BAD_INPUTS = [
    ("not json at all", None, "not JSON"),
    (b"\x00\xff", None, "not UTF-8"),
    ("[]", None, "must be a JSON object"),
    ("null", None, "must be a JSON object"),
    ('{"body": {}}', None, "no 'subject'"),
    ('{"subject": "updater.reboot"}', "updater.reboot", "unknown subject"),
    ('{"subject": "updater.perform_update", "body": {"component": "toaster"}}', "updater.perform_update", "unknown component"),
    ('{"subject": "updater.perform_update", "body": {"component": "core", "dry_run": "no"}}', "updater.perform_update",
     "must be true or false"),
    ('{"subject": "updater.perform_update", "body": {"component": "core", "version": "v1; rm -rf /"}}',
     "updater.perform_update", "is not a version"),
    ('{"subject": "updater.update", "body": 42}', "updater.update", "component name as a string"),
    ('{"subject": "updater.get_history", "body": {"limit": -1}}', "updater.get_history", "between 1 and"),
    ("x" * (SOFT_MAX_BYTES + 1), None, "message too large"),
]


async def test_bad_input_battery_keeps_connection_and_service_up(server, device):
    pid = (device.home / "app.pid").read_text()
    async with connect(ws_url(server)) as ws:
        for raw, subject, text in BAD_INPUTS:
            reply = await ask(ws, raw)
            assert reply["subject"] == "error", raw
            assert reply["body"]["request"] == subject and text in reply["body"]["message"], reply
        assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"

        # a flood: the excess is dropped with one error per second, the connection stays
        began = time.monotonic()
        for _ in range(200):
            await ws.send('{"subject": "updater.get_versions"}')
        answers, last = [], began
        try:
            while True:
                answers.append(json.loads(await asyncio.wait_for(ws.recv(), 1.0)))
                last = time.monotonic()
        except TimeoutError:
            pass
        floods = [a for a in answers if a["subject"] == "error"]
        assert floods and "too many messages" in floods[0]["body"]["message"]
        # A burst, then the rate for as long as the flood lasted (a slow machine takes longer).
        served = len(answers) - len(floods)
        assert served <= RATE_BURST + RATE_PER_SECOND * (last - began) + 1 < 200
        await asyncio.sleep(0.3)
        assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"

    # a frame beyond the hard limit closes that connection (1009) and nothing else
    async with connect(ws_url(server), max_size=None) as ws:
        await ws.send("x" * (2 * 1024 * 1024))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 1009
    async with connect(ws_url(server)) as ws:
        assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"
    assert (device.home / "app.pid").read_text() == pid, "bad input must not touch the device"
    assert not server.updater.get_history()


async def test_foreign_origin_is_refused_on_loopback_and_own_origin_accepted(server):
    for origin in ("http://evil.example", f"http://evil.example:{server.port}", "null",
                   f"http://127.0.0.1:{server.port + 1}"):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(ws_url(server), origin=origin):
                pass
        assert refused.value.response.status_code == 403, origin
    for origin in (f"http://127.0.0.1:{server.port}", f"http://localhost:{server.port}"):
        async with connect(ws_url(server), origin=origin) as ws:
            assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"


async def test_page_and_paths(server):
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
        page = await client.get("/")
        assert page.status_code == 200 and "DuneBugger updater" in page.text
        assert "connect-src 'self'" in page.headers["content-security-policy"]
        assert (await client.get("/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await client.get("/secrets")).status_code == 404
        assert (await client.get("/", headers={"Origin": "http://evil.example"})).status_code == 403


@pytest.fixture
async def guarded(device: DemoDevice) -> AsyncIterator[UpdaterServer]:
    """A server that applies the non-loopback rules (token required) on a loopback socket."""
    port = free_port()
    settings = dataclasses.replace(device.settings(), serve_port=port, serve_token="s3cret")
    rules = AccessRules("127.0.0.1", port, "s3cret", loopback=False)
    running = UpdaterServer(settings, rules=rules, scheduler=False)
    await running.start()
    yield running
    await running.stop(grace_seconds=5)


async def test_token_rules_off_loopback(guarded):
    url = ws_url(guarded)
    # no token: the first message is refused and the connection closed (1008)
    async with connect(url) as ws:
        reply = await ask(ws, {"subject": "updater.get_versions"})
        assert reply["subject"] == "error" and "authentication required" in reply["body"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd.code == 1008
    async with connect(url) as ws:
        assert (await ask(ws, {"subject": "auth", "body": {"token": "wrong"}}))["subject"] == "error"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, additional_headers={"Authorization": "Bearer wrong"}):
            pass
    assert refused.value.response.status_code == 401

    async with connect(url, additional_headers={"Authorization": "Bearer s3cret"}) as ws:
        assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"
    async with connect(url) as ws:
        assert (await ask(ws, {"subject": "auth", "body": {"token": "s3cret"}}))["subject"] == "auth_result"
        assert (await ask(ws, {"subject": "updater.get_versions"}))["subject"] == "versions_result"
    # a token does not excuse a foreign Origin
    with pytest.raises(InvalidStatus) as refused:
        async with connect(url, origin="http://evil.example", additional_headers={"Authorization": "Bearer s3cret"}):
            pass
    assert refused.value.response.status_code == 403


# --- the `serve` command as its own process ------------------------------------------------


def test_non_loopback_bind_without_token_is_a_configuration_error(device):
    run = run_cli("serve", "--host", "0.0.0.0", config=device.config, timeout=60)
    assert run.returncode == 2
    assert "not a loopback address: set serveToken" in run.stderr


async def wait_listening(port: int, process: subprocess.Popen, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                return
            except OSError:
                await asyncio.sleep(0.1)


async def test_serve_streams_progress_answers_busy_notifies_and_stops_gracefully(device):
    """One real update through `dunebugger-updater serve`: two clients, progress to both,
    reads answered and a second update refused while it runs, notifications by mail
    and webhook, and SIGTERM in the middle: the update finishes, then clients close."""
    port = free_port()
    with MailBox() as mailbox, Webhook() as webhook:
        config = device.home / "serve.conf"
        config.write_text(device.config.read_text().replace(
            "[Updater]\n", f"[Updater]\nnotifyUrls = {mailbox.url()}, {webhook.url()}\n", 1))
        process = subprocess.Popen(cli_argv("serve", "--port", str(port), config=config),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=cli_environment())
        try:
            await wait_listening(port, process)
            url = f"ws://127.0.0.1:{port}/ws"
            async with connect(url) as first, connect(url) as second:
                # a check announces 1.1.0 once: a message to every client, one notification
                await ask(first, {"subject": "updater.check_updates", "body": {"force": True}}, "update_check_result")
                announced = await until(second, "update_available", timeout=10)
                assert (announced["body"]["component"], announced["body"]["latest"]) == ("core", "1.1.0")
                await ask(first, {"subject": "updater.check_updates", "body": {"force": True}}, "update_check_result")

                await first.send(json.dumps({"subject": "updater.update", "body": "dunebugger-core"}))
                progress = await until(second, "updater_progress", timeout=30)
                assert progress["body"]["component"] == "core" and progress["body"]["total"] == 5

                versions = await ask(second, {"subject": "updater.get_versions"}, "versions_result", timeout=5)
                assert versions["body"]["components"]["core"]["current"] == "1.0.0"
                busy = await ask(second, {"subject": "updater.perform_update", "body": {"component": "core"}},
                                 "update_result", timeout=5)
                assert (busy["body"]["success"], busy["body"]["outcome"]) == (False, "busy")
                assert busy["body"]["message"].startswith("busy: update of core")

                process.send_signal(signal.SIGTERM)
                for _ in range(50):  # the signal arrives asynchronously; until then the lock answers
                    refused = await ask(second, {"subject": "updater.perform_update", "body": {"component": "core"}},
                                        "update_result", timeout=10)
                    assert not refused["body"]["success"]
                    if "shutting down" in refused["body"]["message"]:
                        break
                    await asyncio.sleep(0.1)
                assert "shutting down" in refused["body"]["message"]

                seen: list[dict] = []
                done = await until(first, "update_result", timeout=120, seen=seen)
                assert done["body"]["success"] and done["body"]["message"] == "Updated core to 1.1.0", done
                steps = [m["body"]["step"] for m in seen if m["subject"] == "updater_progress"]
                assert steps[0] == "preflight" and steps[-1] == "finalize"
                heard = await until(second, "update_result", timeout=10)
                assert heard["body"]["run_id"] == done["body"]["run_id"]
                for ws in (first, second):
                    with pytest.raises(ConnectionClosed) as closed:
                        await asyncio.wait_for(until(ws, "never"), 30)
                    assert closed.value.rcvd.code == 1001
            assert await asyncio.to_thread(process.wait, 60) == 0
        finally:
            if process.poll() is None:
                process.kill()
            stderr = process.stderr.read() if process.stderr else ""
        assert "stop requested" in stderr and "Traceback" not in stderr, stderr
        assert device.health()["version"] == "1.1.0"

        titles = [body["title"] for body in webhook.bodies]
        assert titles == ["DuneBugger: core 1.1.0 available", "DuneBugger: core updated to 1.1.0"], titles
        assert webhook.bodies[1]["type"] == "success" and "Updated core to 1.1.0" in webhook.bodies[1]["message"]
        assert len(mailbox.messages) == 2 and mailbox.messages[0][0] == ["ops@example.com"]
        assert "Subject: DuneBugger: core updated to 1.1.0" in mailbox.messages[1][1]


IDLE_PROBE = textwrap.dedent("""
    import asyncio, dataclasses, json, sys
    from websockets.asyncio.client import connect
    from dunebugger_updater.config import load_settings
    from dunebugger_updater.service.server import UpdaterServer

    async def main():
        settings = dataclasses.replace(load_settings(sys.argv[1], environ={}), serve_port=int(sys.argv[2]))
        server = UpdaterServer(settings)
        await server.start()
        async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
            for subject, answer in (("updater.check_updates", "update_check_result"),
                                    ("updater.get_versions", "versions_result")):
                await ws.send(json.dumps({"subject": subject, "body": {"force": True}}))
                while json.loads(await ws.recv())["subject"] != answer:
                    pass
        await server.stop(5)
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("ansible", "ansible_runner", "apprise"))))

    asyncio.run(main())
""")


def test_ansible_and_apprise_stay_out_of_an_idle_service(device):
    run = subprocess.run([sys.executable, "-c", IDLE_PROBE, str(device.config), str(free_port())],
                         capture_output=True, text=True, env=cli_environment(), timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.strip().splitlines()[-1]) == []
