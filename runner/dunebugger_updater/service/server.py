"""`dunebugger-updater serve`: the WebSocket API on `/ws` and the operator page on `/`,
in one asyncio process (websockets).

Before a connection is authenticated (see admission): at most `ConnectionLimits.waiting`
such connections at once, the oldest closed first, each with `ConnectionLimits.seconds`
from its TCP accept for the handshake and the `auth` message, frames no larger than
`SOFT_MAX_BYTES`, and refusals logged one line per kind and interval. A request with a
repeated `Origin` or `Authorization` header is refused with HTTP 400.

Per connection: frames over `SOFT_MAX_BYTES` get an error (over `HARD_MAX_BYTES` the
library closes the connection with 1009), a token bucket answers floods with one
error per second and drops the excess, and at most `MAX_IN_FLIGHT` requests run at
once (further frames stay unread until one finishes). Each request runs as its own task,
so a connection keeps being answered (progress, get_versions) while its update runs.
`updater_progress`, `update_result`, `update_available` and periodic check results go
to every authenticated client.

On SIGTERM or SIGINT: no new updates start, a running one is waited for (the systemd
unit allows for that), clients are closed with 1001, and the process exits 0.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
import weakref
from collections.abc import Callable
from http import HTTPStatus
from importlib import resources
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .. import messages
from ..config import Settings
from ..results import Outcome
from ..updater import ComponentUpdater
from .admission import Admission, ConnectionLimits, RefusalLog, raise_open_file_limit
from .api import Api
from .notify import Notifier
from .scheduler import Scheduler
from .security import AccessRules
from .updater_service import UpdaterService

log = logging.getLogger(__name__)

SOFT_MAX_BYTES = 16 * 1024  # a real request is a few hundred bytes
HARD_MAX_BYTES = 1024 * 1024
MAX_IN_FLIGHT = 4  # requests answered at once per connection; more wait unread
RATE_PER_SECOND = 20.0
RATE_BURST = 40
SINGLE_HEADERS = ("Origin", "Authorization")  # the rules read one value; two are refused
PAGE_FILES = {  # path -> (file in page/, content type)
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cache-Control", "no-store"),
]


class RateLimit:
    """Token bucket: `burst` messages at once, then `rate` per second."""

    def __init__(
        self, rate: float = RATE_PER_SECOND, burst: int = RATE_BURST, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._rate, self._burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._warned_at = float("-inf")

    def allow(self) -> bool:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def should_warn(self) -> bool:
        """At most one flood error per second, so answering a flood is no flood."""
        now = self._clock()
        if now - self._warned_at >= 1.0:
            self._warned_at = now
            return True
        return False


class UpdaterServer:
    def __init__(
        self,
        settings: Settings,
        *,
        updater: ComponentUpdater | None = None,
        notifier: Notifier | None = None,
        rules: AccessRules | None = None,
        scheduler: bool = True,
        limits: ConnectionLimits | None = None,
    ) -> None:
        self.settings = settings
        self.rules = rules or AccessRules(settings.serve_host, settings.serve_port, settings.serve_token)
        self.updater = updater or ComponentUpdater(settings)
        self.service = UpdaterService(
            self.updater, notifier=notifier or Notifier(settings.notify_urls), broadcast=self.broadcast
        )
        self.api = Api(self.service)
        self.updater.add_listener(self.broadcast)
        self._clients: set[ServerConnection] = set()
        self._bearer: weakref.WeakSet[ServerConnection] = weakref.WeakSet()
        self._limits = limits = limits or ConnectionLimits()
        self._refusals = RefusalLog(limits.log_interval)
        self._admission = Admission(limits.waiting, limits.seconds, self._refusals)
        self._with_scheduler = scheduler
        self._server: Server | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.port = settings.serve_port

    # --- life cycle ------------------------------------------------------------------

    async def start(self) -> None:
        open_files = raise_open_file_limit()
        self._admission.cap = self._limits.waiting_within(open_files)
        self._server = await serve(
            self._connection,
            self.settings.serve_host,
            self.settings.serve_port,
            process_request=self._process_request,
            max_size=HARD_MAX_BYTES,
            max_queue=8,
            server_header=None,
            open_timeout=self._limits.seconds,
            create_connection=type("Connection", (_AdmittedConnection,), {"admission": self._admission}),
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self.rules.port = self.port
        log.info(
            "serving the operator page on http://%s:%d/ and the API on ws://%s:%d/ws%s",
            self.settings.serve_host,
            self.port,
            self.settings.serve_host,
            self.port,
            " (token required)" if self.rules.token_required else "",
        )
        log.info(
            "at most %d connections wait for authentication at once, %g s each (open-file limit %d)",
            self._admission.cap,
            self._limits.seconds,
            open_files,
        )
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self.service.recover(), name="recover"))
        if self._with_scheduler:
            self._tasks.append(
                loop.create_task(Scheduler(self.service, broadcast=self.broadcast).run(), name="scheduler")
            )

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Refuse new work, let a running update finish, then close every client."""
        self.service.stop_accepting()
        if self.service.busy:
            log.warning("stopping: waiting for the running update to finish")
        if not await self.service.wait_idle(grace_seconds):
            log.error("stopping with an update still running; the next start recovers it")
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        try:
            await asyncio.wait_for(self.service.notifier.drain(), 30)
        except TimeoutError:
            log.warning("stopping without waiting longer for notifications")
        self._refusals.flush()
        log.info("stopped")

    def broadcast(self, message: dict[str, Any], *, skip: ServerConnection | None = None) -> None:
        targets = [client for client in self._clients if client is not skip]
        if targets:
            broadcast(targets, json.dumps(message))

    # --- HTTP: the page, and the handshake rules ---------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        repeated = [name for name in SINGLE_HEADERS if len(request.headers.get_all(name)) > 1]
        if repeated:
            return self._refuse(
                connection,
                HTTPStatus.BAD_REQUEST,
                f"more than one {repeated[0]} header",
                "repeated header",
                repeated[0],
            )
        origin = request.headers.get("Origin")
        if not self.rules.origin_allowed(origin, _local_ip(connection)):
            return self._refuse(connection, HTTPStatus.FORBIDDEN, "Origin not allowed", "foreign Origin", repr(origin))
        path = request.path.split("?", 1)[0]
        if path in PAGE_FILES:
            self._settle(connection)
            return _page_file(*PAGE_FILES[path])
        if path != "/ws":
            return self._refuse(connection, HTTPStatus.NOT_FOUND, "Not found", "unknown path", repr(path[:100]))
        authorization = request.headers.get("Authorization")
        if authorization is not None:
            if not self.rules.bearer_matches(authorization):
                return self._refuse(connection, HTTPStatus.UNAUTHORIZED, "Bad token", "wrong bearer token")
            self._bearer.add(connection)
        if authorization is not None or not self.rules.token_required:
            self._settle(connection)
        return None  # go on with the WebSocket handshake

    def _refuse(
        self, connection: ServerConnection, status: HTTPStatus, text: str, kind: str, detail: str = ""
    ) -> Response:
        self._admission.refused(connection, kind, detail)
        return connection.respond(status, text + "\n")

    def _settle(self, connection: ServerConnection) -> None:
        """Authenticated (or needing no token): no longer waiting, full-size frames from now."""
        self._admission.settled(connection)
        connection.protocol.max_message_size = HARD_MAX_BYTES

    # --- WebSocket ---------------------------------------------------------------------

    async def _connection(self, connection: ServerConnection) -> None:
        needs_token = self.rules.token_required and connection not in self._bearer
        if needs_token and not await self._authenticate(connection):
            return
        self._clients.add(connection)
        try:
            await self._serve(connection)
        except ConnectionClosed:
            pass
        finally:
            self._clients.discard(connection)

    async def _authenticate(self, connection: ServerConnection) -> bool:
        """The first message must be `auth` with the token, within the time left since
        the TCP accept; anything else closes (1008)."""
        try:
            raw = await asyncio.wait_for(connection.recv(), self._admission.time_left(connection))
        except (TimeoutError, ConnectionClosed):
            await connection.close(1008, "authentication required")
            return False  # admission counts it when the connection is gone
        if not self.rules.token_matches(_auth_token(raw)):
            self._admission.refused(connection, "no auth message with the token first")
            reply = messages.error(
                'authentication required: send {"subject": "auth", "body": '
                '{"token": ...}} first, or an Authorization: Bearer header',
                "auth",
            )
            await _send(connection, reply)
            await connection.close(1008, "authentication required")
            return False
        self._settle(connection)
        await _send(connection, messages.message("auth_result", {"authenticated": True}))
        return True

    async def _serve(self, connection: ServerConnection) -> None:
        limit = RateLimit()
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        async for raw in connection:
            problem = None
            if len(raw) > SOFT_MAX_BYTES:
                problem = f"message too large ({len(raw)} bytes; the limit is {SOFT_MAX_BYTES})"
            elif not limit.allow():
                if not limit.should_warn():
                    continue
                problem = f"too many messages: at most {RATE_PER_SECOND:.0f} per second; some were dropped"
            if problem:
                await _send(connection, messages.error(problem, None))
                continue
            # Backpressure, not refusal: with every slot taken we stop reading this socket.
            await slots.acquire()
            task = asyncio.get_running_loop().create_task(self._answer(connection, raw))
            task.add_done_callback(lambda _: slots.release())

    async def _answer(self, connection: ServerConnection, raw: str | bytes) -> None:
        if _auth_message(raw) is not None:
            # A client that authenticates without needing to (loopback, or a bearer header).
            reply = messages.message("auth_result", {"authenticated": True})
        else:
            reply = await self.api.handle(raw)
        await _send(connection, reply)
        if reply["subject"] == "update_result" and reply["body"]["outcome"] != Outcome.BUSY:
            self.broadcast(reply, skip=connection)  # what happened to the device concerns every client


class _AdmittedConnection(ServerConnection):
    """A connection that waits in `admission` from its TCP accept until it is settled,
    with small frames only until then."""

    admission: Admission

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.protocol.max_message_size = SOFT_MAX_BYTES
        self.admission.arrived(self, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        self.admission.left(self)
        super().connection_lost(exc)


def _page_file(name: str, content_type: str) -> Response:
    body = resources.files(__package__).joinpath("page", name).read_bytes()
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(body))), *PAGE_HEADERS])
    return Response(HTTPStatus.OK.value, "OK", headers, body)


def _auth_message(raw: str | bytes) -> dict[str, Any] | None:
    """An `auth` message, parsed; None for anything else."""
    if len(raw) > SOFT_MAX_BYTES:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and data.get("subject") == "auth" else None


def _auth_token(raw: str | bytes) -> str | None:
    """The token an `auth` message presents (None when it is not one, or has none)."""
    body = (_auth_message(raw) or {}).get("body")
    token = body.get("token") if isinstance(body, dict) else None
    return token if isinstance(token, str) else None


def _local_ip(connection: ServerConnection) -> str | None:
    try:
        return connection.local_address[0]
    except (AttributeError, IndexError, TypeError):
        return None


async def _send(connection: ServerConnection, message: dict[str, Any]) -> None:
    try:
        await connection.send(json.dumps(message))
    except ConnectionClosed:
        pass


async def serve_forever(settings: Settings, *, grace_seconds: float | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; the exit status."""
    server = UpdaterServer(settings)
    await server.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await stopping.wait()
    log.info("stop requested")
    await server.stop(grace_seconds)
    return 0
