"""Hostile clients of the service, with the token rule on (the `loopback=False` hook of
AccessRules on a loopback socket): floods of silent connections, slow handshakes,
malformed handshakes and odd tokens. Real servers, real sockets; the flood runs against
a service process whose open-file limit is low, so running out of handles is real."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from dunebugger_updater.demo import DemoDevice, free_port
from dunebugger_updater.service.admission import ConnectionLimits
from dunebugger_updater.service.security import AccessRules
from dunebugger_updater.service.server import SOFT_MAX_BYTES, UpdaterServer

pytestmark = pytest.mark.integration

TOKEN = "s3cret"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SECONDS = 1.0  # the time a connection has to authenticate, in these tests
SLACK = 1.5


@pytest.fixture
async def guarded(device: DemoDevice) -> AsyncIterator[UpdaterServer]:
    port = free_port()
    settings = dataclasses.replace(device.settings(), serve_port=port, serve_token=TOKEN)
    server = UpdaterServer(settings, rules=AccessRules("127.0.0.1", port, TOKEN, loopback=False), scheduler=False,
                           limits=ConnectionLimits(seconds=SECONDS))
    await server.start()
    yield server
    await server.stop(grace_seconds=5)


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}/ws"


async def versions(ws: ClientConnection) -> dict:
    await ws.send(json.dumps({"subject": "updater.get_versions"}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def assert_operator_served(port: int) -> float:
    """An operator with the token gets versions, by header and by auth message; seconds taken."""
    started = time.monotonic()
    async with connect(ws_url(port), additional_headers=BEARER, open_timeout=10) as ws:
        assert (await versions(ws))["subject"] == "versions_result"
    async with connect(ws_url(port), open_timeout=10) as ws:
        await ws.send(json.dumps({"subject": "auth", "body": {"token": TOKEN}}))
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["subject"] == "auth_result"
        assert (await versions(ws))["subject"] == "versions_result"
    return time.monotonic() - started


async def raw_exchange(port: int, request: bytes, wait: float = 10) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(4096), wait)
    finally:
        writer.close()


def handshake(*extra: str, path: str = "/ws") -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13", *extra]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


# --- malformed handshakes and odd tokens ------------------------------------------------


@pytest.mark.parametrize(("header", "value", "status"), [
    ("Origin", "http://127.0.0.1", b"400"),              # the rules read one value: two are refused
    ("Authorization", f"Bearer {TOKEN}", b"400"),
    ("Host", "127.0.0.1", b"101"),                       # not read by anyone here: harmless
    ("Upgrade", "websocket", b"426"),                    # the library's own checks
    ("Connection", "Upgrade", b"101"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==", b"400"),
    ("Sec-WebSocket-Version", "13", b"400"),
])
async def test_a_repeated_handshake_header_never_breaks_the_service(guarded, header, value, status):
    reply = await raw_exchange(guarded.port, handshake(f"{header}: {value}", f"{header}: {value}"))
    assert reply.split(b" ")[1] == status, reply
    assert await assert_operator_served(guarded.port) < 5


async def test_two_origin_headers_are_refused_with_400(guarded):
    reply = await raw_exchange(guarded.port, handshake(f"Origin: http://127.0.0.1:{guarded.port}", "Origin: http://evil.example"))
    assert reply.startswith(b"HTTP/1.1 400") and b"more than one Origin header" in reply, reply


@pytest.mark.parametrize("token", ["\ud800", "s3cret\udfff", "\udcff" * 1000, "s3cr\u00e9t", ""])
async def test_odd_tokens_get_a_clean_refusal(guarded, token, caplog):
    async with connect(ws_url(guarded.port)) as ws:
        await ws.send(json.dumps({"subject": "auth", "body": {"token": token}}))  # JSON escapes: "\ud800"
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["subject"] == "error" and "authentication required" in reply["body"]["message"]
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 1008
    assert "handler failed" not in caplog.text and "Traceback" not in caplog.text
    assert await assert_operator_served(guarded.port) < 5


# --- slow and silent clients ----------------------------------------------------------------


async def closed_after(port: int, send: bytes = b"", every: float = 0.0) -> float:
    """Seconds until the service closes a connection that sends `send` a byte every `every` s."""
    started = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    trickle = asyncio.create_task(_trickle(writer, send, every))
    try:
        while await asyncio.wait_for(reader.read(4096), SECONDS + 10):
            pass
    except ConnectionResetError:
        pass
    finally:
        trickle.cancel()
        writer.close()
    return time.monotonic() - started


async def _trickle(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for byte in data:
        writer.write(bytes([byte]))
        await asyncio.sleep(every)


async def test_a_silent_connection_is_closed_after_the_handshake_time(guarded):
    assert SECONDS <= await closed_after(guarded.port) < SECONDS + SLACK


async def test_a_trickled_handshake_is_closed_at_the_same_time(guarded):
    assert SECONDS <= await closed_after(guarded.port, handshake(), every=0.1) < SECONDS + SLACK


async def test_an_open_websocket_without_auth_is_closed_when_its_time_is_up(guarded):
    started = time.monotonic()
    async with connect(ws_url(guarded.port)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), SECONDS + 10)
    assert closed.value.rcvd.code == 1008
    assert time.monotonic() - started < SECONDS + SLACK


async def test_before_auth_only_small_frames_are_read(guarded):
    async with connect(ws_url(guarded.port), max_size=None) as ws:
        await ws.send("x" * (SOFT_MAX_BYTES + 1))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd.code == 1009
    async with connect(ws_url(guarded.port), additional_headers=BEARER) as ws:
        await ws.send("x" * (SOFT_MAX_BYTES + 1))  # authenticated: a clear error, the connection stays
        assert "message too large" in json.loads(await asyncio.wait_for(ws.recv(), 10))["body"]["message"]
        assert (await versions(ws))["subject"] == "versions_result"


# --- a flood against a service process with few file handles --------------------------------

FLOOD_SERVICE = textwrap.dedent("""
    import asyncio, dataclasses, logging, signal, sys
    from dunebugger_updater.service.admission import ConnectionLimits
    from dunebugger_updater.config import load_settings
    from dunebugger_updater.service.security import AccessRules
    from dunebugger_updater.service.server import UpdaterServer

    async def main(config, port):
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("dunebugger_updater").setLevel(logging.INFO)  # as `serve` logs
        settings = dataclasses.replace(load_settings(config, environ={}), serve_port=port, serve_token="s3cret")
        server = UpdaterServer(settings, rules=AccessRules("127.0.0.1", port, "s3cret", loopback=False),
                               scheduler=False, limits=ConnectionLimits(seconds=5.0, log_interval=3.0))
        await server.start()
        print("listening", flush=True)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await server.stop(5)

    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
""")
OPEN_FILES = 256  # soft and hard: what a small service unit might get
SILENT = 500
HANDSHAKEN = 100


def few_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))


def open_files_of(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def test_a_flood_of_silent_connections_leaves_the_operator_served(device, record_property):
    """500 silent TCP connections and 100 WebSocket connections that never authenticate,
    against a service with 256 file handles: it holds a bounded number of them, answers
    an operator at once, closes the rest when their time is up, and logs a few lines."""
    port = free_port()
    service = subprocess.Popen([sys.executable, "-c", FLOOD_SERVICE, str(device.config), str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=few_files,
                               env={k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")})
    silent, handshaken = [], []
    try:
        assert await asyncio.wait_for(asyncio.to_thread(service.stdout.readline), 60) == "listening\n"
        idle_files = open_files_of(service.pid)
        async with asyncio.timeout(60):  # a service out of file handles stops accepting: connects hang
            for _ in range(SILENT):
                silent.append(await asyncio.open_connection("127.0.0.1", port))
            for _ in range(HANDSHAKEN):
                try:
                    handshaken.append(await connect(ws_url(port), open_timeout=5))
                except (OSError, ConnectionClosed, TimeoutError):
                    pass  # closed to make room already: that is the point
        flood_files = open_files_of(service.pid)
        served_in = await assert_operator_served(port)
        record_property("open files idle / during the flood / limit", f"{idle_files} / {flood_files} / {OPEN_FILES}")
        record_property("operator served in s", f"{served_in:.2f}")
        assert flood_files < idle_files + 64 + 16, f"{flood_files} files open during the flood (idle: {idle_files})"
        assert served_in < 5

        await asyncio.sleep(5.0 + SLACK)  # every waiting connection's time is up
        assert open_files_of(service.pid) <= idle_files + 2
        assert await assert_operator_served(port) < 5
    finally:
        for _, writer in silent:
            writer.close()
        for ws in handshaken:
            await ws.close()
        service.send_signal(signal.SIGTERM)
        stderr = service.communicate(timeout=60)[1]
    lines = stderr.splitlines()
    record_property("log lines", len(lines))
    assert service.returncode == 0, stderr
    assert "Traceback" not in stderr and "out of system resource" not in stderr, stderr
    assert any("refused a connection: closed to make room" in line for line in lines), stderr
    assert any("more connections in the last 3 s" in line for line in lines), stderr
    assert len(lines) < 20, stderr
