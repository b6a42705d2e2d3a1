"""The WebSocket API: one request text in, one reply message out.

    updater.check_updates  {force?: bool}                            -> update_check_result
    updater.perform_update {component, dry_run?: bool, version?: str, bundle?: str}
                                                                     -> update_result
    updater.update         "core" | "dunebugger-core"                 -> update_result
    updater.rollback       {component, to?: str}                      -> update_result
    updater.get_versions   {}                                         -> versions_result
    updater.get_history    {limit?: int}                              -> update_history

Anything that cannot be served is answered with an `error` message naming what is
wrong and the subject it was about; nothing starts. Parsing and checking are pure
functions; `Api.handle` calls the service.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import messages
from ..errors import BadRequest, ConfigError
from ..release.local import LocalSource
from .updater_service import UpdaterService

log = logging.getLogger(__name__)

MAX_HISTORY = 1000
MAX_TEXT = 100  # component names and version texts are far shorter


EXPECTED_KIND: dict[type, str] = {bool: "true or false", str: "a string", int: "a whole number"}


class ApiError(Exception):
    """A request that cannot be served; `request` is its subject when one was readable."""

    def __init__(self, message: str, request: str | None = None) -> None:
        super().__init__(message)
        self.request = request


@dataclass(frozen=True)
class Request:
    subject: str
    body: Any


def parse_request(raw: str | bytes) -> Request:
    """Decode one frame into a subject and a body, or ApiError."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError("message is not UTF-8 text") from None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(f"message is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(f"message must be a JSON object, not {_kind(data)}")
    subject = data.get("subject")
    if not isinstance(subject, str) or not subject:
        raise ApiError("message has no 'subject' (a non-empty string)")
    return Request(subject[:MAX_TEXT], data.get("body"))


# --- body checks: each returns the arguments for the service, or raises ApiError -----


def _object(request: Request, required: bool = False) -> Mapping[str, Any]:
    if request.body is None and not required:
        return {}
    if not isinstance(request.body, dict):
        raise ApiError(f"'body' must be a JSON object, not {_kind(request.body)}", request.subject)
    return request.body


def _field(
    request: Request,
    body: Mapping[str, Any],
    name: str,
    kind: type | tuple[type, ...],
    default: Any = None,
    required: bool = False,
) -> Any:
    if name not in body or body[name] is None:
        if required:
            raise ApiError(f"'body.{name}' is required", request.subject)
        return default
    value = body[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = EXPECTED_KIND.get(kind, str(kind)) if isinstance(kind, type) else str(kind)
        raise ApiError(f"'body.{name}' must be {expected}, not {_kind(value)}", request.subject)
    if isinstance(value, str) and not (0 < len(value) <= MAX_TEXT):
        raise ApiError(f"'body.{name}' must be 1 to {MAX_TEXT} characters long", request.subject)
    return value


def component_name(text: str) -> str:
    """`dunebugger-core` -> `core` (the form the real remote component sends)."""
    text = text.strip()
    return text[len("dunebugger-") :] if text.startswith("dunebugger-") else text


# --- dispatch ---------------------------------------------------------------------------

Handler = Callable[["Api", Request], Awaitable[dict[str, Any]]]


class Api:
    def __init__(self, service: UpdaterService) -> None:
        self._service = service

    async def handle(self, raw: str | bytes) -> dict[str, Any]:
        """The reply to one frame (never raises for bad input)."""
        subject: str | None = None
        try:
            request = parse_request(raw)
            subject = request.subject
            handler = HANDLERS.get(request.subject)
            if handler is None:
                raise ApiError(f"unknown subject {request.subject!r} (known: {', '.join(HANDLERS)})", subject)
            return await handler(self, request)
        except ApiError as exc:
            return messages.error(str(exc), exc.request)
        except (ConfigError, BadRequest) as exc:
            return messages.error(str(exc), subject)

    async def check_updates(self, request: Request) -> dict[str, Any]:
        body = _object(request)
        force = _field(request, body, "force", bool, default=False)
        return messages.check_result(await self._service.check(force=force))

    async def get_versions(self, request: Request) -> dict[str, Any]:
        return messages.versions_result(await self._service.versions())

    async def get_history(self, request: Request) -> dict[str, Any]:
        body = _object(request)
        limit = _field(request, body, "limit", int)
        if limit is not None and not 0 < limit <= MAX_HISTORY:
            raise ApiError(f"'body.limit' must be between 1 and {MAX_HISTORY}", request.subject)
        return messages.history(await self._service.history(limit))

    async def perform_update(self, request: Request) -> dict[str, Any]:
        body = _object(request, required=True)
        component = self._known(request, _field(request, body, "component", str, required=True))
        dry_run = _field(request, body, "dry_run", bool, default=False)
        version = _field(request, body, "version", str)
        source = self._bundle(request, _field(request, body, "bundle", str))
        return messages.update_result(
            await self._service.update(component, dry_run=dry_run, version=version, source=source)
        )

    async def update(self, request: Request) -> dict[str, Any]:
        if not isinstance(request.body, str) or not 0 < len(request.body) <= MAX_TEXT:
            raise ApiError("'body' must be the component name as a string (e.g. \"core\")", request.subject)
        component = self._known(request, component_name(request.body))
        return messages.update_result(await self._service.update(component))

    async def rollback(self, request: Request) -> dict[str, Any]:
        body = _object(request, required=True)
        component = self._known(request, _field(request, body, "component", str, required=True))
        to = _field(request, body, "to", str)
        return messages.update_result(await self._service.rollback(component, to=to))

    def _bundle(self, request: Request, name: str | None) -> LocalSource | None:
        """A bundle directory under bundlePath (whether it really is inside, links
        resolved, the update itself decides, and refuses with a line in the history)."""
        if name is None:
            return None
        root = self._service.updater.settings.bundle_path
        if root is None:
            raise ApiError(
                "updates from a bundle are off on this device: set bundlePath in [Updater] to the directory "
                "that holds bundles",
                request.subject,
            )
        if "\x00" in name:
            raise ApiError("'body.bundle' must not contain a NUL character", request.subject)
        return LocalSource.bundle(root, name)

    def _known(self, request: Request, name: str) -> str:
        components = self._service.updater.settings.components
        if name not in components:
            raise ApiError(f"unknown component {name!r} (known: {', '.join(components)})", request.subject)
        return name


HANDLERS: dict[str, Handler] = {
    "updater.check_updates": Api.check_updates,
    "updater.perform_update": Api.perform_update,
    "updater.update": Api.update,
    "updater.rollback": Api.rollback,
    "updater.get_versions": Api.get_versions,
    "updater.get_history": Api.get_history,
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)
