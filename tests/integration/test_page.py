"""The operator page in headless Chromium, driven over the DevTools protocol (with the
`websockets` client we already have; no browser driver needed)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from dunebugger_updater.bundle.maker import BundleMaker, Wanted
from dunebugger_updater.demo import DemoDevice, free_port
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.service.server import UpdaterServer

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
         "--disable-extensions", "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0"]


@pytest.fixture
def device(tmp_path: Path, github: FakeGitHub) -> Iterator[DemoDevice]:
    sandbox = DemoDevice(tmp_path / "device", github)  # not started: the page only reads
    for repo in ("marco-svitol/dunebugger-scheduler", "marco-svitol/dunebugger-remote"):
        github.add_release(repo, "v1.0.0")
    sandbox.publish("1.1.0")
    yield sandbox


@pytest.fixture
async def server(device: DemoDevice, tmp_path: Path) -> AsyncIterator[UpdaterServer]:
    settings = dataclasses.replace(device.settings(), serve_port=free_port(), bundle_path=tmp_path / "bundles")
    running = UpdaterServer(settings, scheduler=False)
    await running.start()
    yield running
    await running.stop(grace_seconds=5)


class Page:
    """Just enough of the DevTools protocol: evaluate JavaScript in the page."""

    def __init__(self, socket: ClientConnection) -> None:
        self._socket = socket
        self._ids = itertools.count(1)

    async def evaluate(self, expression: str) -> Any:
        number = next(self._ids)
        await self._socket.send(json.dumps({"id": number, "method": "Runtime.evaluate",
                                            "params": {"expression": expression, "returnByValue": True}}))
        while True:
            answer = json.loads(await self._socket.recv())
            if answer.get("id") == number:
                result = answer["result"]
                assert "exceptionDetails" not in result, result
                return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        async with asyncio.timeout(timeout):
            while not (value := await self.evaluate(expression)):
                await asyncio.sleep(0.1)
        return value


@pytest.fixture
async def page(server: UpdaterServer, tmp_path: Path) -> AsyncIterator[Page]:
    profile = tmp_path / "chromium-profile"
    browser = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"http://127.0.0.1:{server.port}/"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.is_file() or not port_file.read_text().strip():
                await asyncio.sleep(0.1)
            devtools = int(port_file.read_text().splitlines()[0])
            async with httpx.AsyncClient() as client:
                while True:
                    targets = (await client.get(f"http://127.0.0.1:{devtools}/json/list")).json()
                    pages = [t for t in targets if t["type"] == "page" and str(server.port) in t["url"]]
                    if pages:
                        break
                    await asyncio.sleep(0.1)
        async with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as socket:
            yield Page(socket)
    finally:
        browser.terminate()
        try:
            browser.wait(10)
        except subprocess.TimeoutExpired:
            browser.kill()


ROW_TEXT = """(() => { const row = document.querySelector('#components tr[data-component="core"]');
                     return row ? Array.from(row.cells, c => c.textContent) : null; })()"""


async def test_page_loads_shows_components_and_check_updates_the_table(page):
    assert await page.wait_for("document.getElementById('connection')?.textContent === 'connected'")
    names = await page.wait_for("Array.from(document.querySelectorAll('#components tbody tr'), r => r.dataset.component)"
                                ".join(',') || null")
    assert names == "core,scheduler,remote"
    core = await page.evaluate(ROW_TEXT)
    assert core[:3] == ["core", "1.0.0", "\u2013"]  # nothing checked yet (an en dash)

    await page.evaluate("document.getElementById('check').click()")
    core = await page.wait_for(f"(() => {{ const cells = {ROW_TEXT}; return cells && cells[2] === '1.1.0' && cells; }})()")
    assert core[3] == "update available" and core[4] == "Sample app 1.1.0"
    buttons = await page.evaluate("Array.from(document.querySelectorAll('#components tr[data-component=core] button'), "
                                  "b => b.textContent)")
    assert buttons == ["Update", "Dry run"]
    assert (await page.evaluate("document.getElementById('checked').textContent")).startswith("last checked")


async def test_a_dry_run_from_a_bundle_under_bundle_path(page, server, device, tmp_path):
    elsewhere = {"UPDATER_STATEPATH": str(tmp_path / "online-state")}  # the machine that made the bundle
    await BundleMaker(device.settings(elsewhere)).create([Wanted("core")], server.settings.bundle_path / "core-1.1.0")
    await page.wait_for("document.getElementById('bundle-component')?.options.length === 3")

    await page.evaluate("document.getElementById('bundle-component').value = 'core';"
                        "document.getElementById('bundle-name').value = 'core-1.1.0';"
                        "document.getElementById('bundle-dry-run').click()")

    result = await page.wait_for("(() => { const text = document.getElementById('result').textContent;"
                                 " return text.startsWith('Dry run:') && text; })()")
    assert "would update core from 1.0.0 to 1.1.0; dunebugger-1.1.0.tar.gz copied from bundle" in result
    assert result.endswith("nothing was changed")
