"""Artifact downloads that a device can trust.

Only from allowed hosts (GitHub's download hosts and the configured API host), only
over https unless the configured API itself is plain http (a loopback test server),
following redirects hop by hop under the same rule, the API token only for the API's
own origin, capped in decoded size, finished within `downloadTimeoutSeconds` (every
hop included), and kept only when the sha256 matches. A refused or corrupt download
leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from ..errors import DownloadError
from ..statedir import create_new
from . import transfer

if TYPE_CHECKING:
    from ..config import Settings

log = logging.getLogger(__name__)

GITHUB_DOWNLOAD_HOSTS = frozenset(
    {
        "github.com",
        "objects.githubusercontent.com",
        "release-assets.githubusercontent.com",
    }
)
MAX_REDIRECTS = 5
READ_TIMEOUT_SECONDS = 60.0  # a peer silent this long is gone, whatever the deadline still allows


@dataclass(frozen=True)
class DownloadPolicy:
    allowed_hosts: frozenset[str]
    http_hosts: frozenset[str]  # hosts that may be reached without TLS
    max_bytes: int
    api_origin: transfer.Origin  # the only origin that is shown the API token
    deadline_seconds: float  # downloadTimeoutSeconds: every hop and the whole body

    @classmethod
    def from_settings(cls, settings: Settings) -> DownloadPolicy:
        api = httpx.URL(settings.github_api_url)
        api_host = api.host or ""
        return cls(
            allowed_hosts=GITHUB_DOWNLOAD_HOSTS | {api_host},
            http_hosts=frozenset({api_host}) if api.scheme == "http" else frozenset(),
            max_bytes=settings.max_download_mb * 1024 * 1024,
            api_origin=transfer.origin(api),
            deadline_seconds=settings.download_timeout_seconds,
        )

    def check(self, url: str) -> httpx.URL:
        parsed = httpx.URL(url)
        host = parsed.host or ""
        if host not in self.allowed_hosts:
            raise DownloadError(
                f"download from {host or url!r} is not allowed (allowed: {', '.join(sorted(self.allowed_hosts))})"
            )
        if parsed.scheme != "https" and not (parsed.scheme == "http" and host in self.http_hosts):
            raise DownloadError(f"download URL {url!r} must use https")
        return parsed


async def download_verified(
    url: str,
    sha256: str,
    destination: Path,
    policy: DownloadPolicy,
    *,
    token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Path:
    """Fetch `url` to `destination` and return it, or raise DownloadError leaving nothing."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    try:
        digest = await _download(url, partial, policy, token, transport)
        if digest != sha256.lower():
            raise DownloadError(f"sha256 mismatch for {destination.name}: expected {sha256.lower()}, got {digest}")
        os.replace(partial, destination)
    finally:
        partial.unlink(missing_ok=True)
    return destination


async def download_bytes(
    url: str,
    policy: DownloadPolicy,
    *,
    max_bytes: int,
    name: str = "download",
    token: str | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> bytes:
    """A small file (a detached signature) under the same host, scheme, redirect and
    deadline rules and a tighter size cap. No sha256: its reader checks what it proves."""
    small = dataclasses.replace(policy, max_bytes=min(max_bytes, policy.max_bytes))
    with tempfile.TemporaryDirectory(prefix="dunebugger-fetch-") as tmp:
        target = Path(tmp) / (Path(name).name + ".partial")  # `name` is ours: it labels messages
        await _download(url, target, small, token, transport)
        return target.read_bytes()


async def _download(
    url: str, target: Path, policy: DownloadPolicy, token: str | None, transport: httpx.AsyncBaseTransport | None
) -> str:
    """`url` saved to `target`, every hop and the body within the policy's deadline; its sha256."""
    try:
        async with (
            httpx.AsyncClient(
                timeout=min(READ_TIMEOUT_SECONDS, policy.deadline_seconds), transport=transport, follow_redirects=False
            ) as client,
            transfer.deadline(policy.deadline_seconds, url, "downloadTimeoutSeconds"),
        ):
            return await _fetch(client, url, target, policy, token)
    except transfer.TransferError as exc:
        raise DownloadError(str(exc)) from None
    except httpx.TimeoutException:
        raise DownloadError(f"download of {url} timed out: nothing arrived for {READ_TIMEOUT_SECONDS:g} s") from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: {exc or type(exc).__name__}") from None


async def _fetch(client: httpx.AsyncClient, url: str, target: Path, policy: DownloadPolicy, token: str | None) -> str:
    current = policy.check(url)
    for _ in range(MAX_REDIRECTS + 1):
        # Hop by hop: the token goes only to the API's own origin, never to a redirect target.
        headers = {
            "Accept": "application/octet-stream",
            "Accept-Encoding": transfer.ACCEPT_ENCODING,
            **transfer.bearer(token, current, policy.api_origin),
        }
        async with client.stream("GET", current, headers=headers) as response:
            if response.is_redirect:
                location = response.headers.get("location", "")
                current = policy.check(str(current.join(location)))
                continue
            if response.status_code != 200:
                raise DownloadError(f"download of {current} answered {response.status_code}")
            return await _save(response, target, policy.max_bytes)
    raise DownloadError(f"download of {url} redirected more than {MAX_REDIRECTS} times")


async def _save(response: httpx.Response, target: Path, max_bytes: int) -> str:
    digest = hashlib.sha256()
    with os.fdopen(create_new(target), "wb") as handle:  # never through a link planted at the partial's name
        async for piece in transfer.decoded_pieces(response, max_bytes):
            digest.update(piece)
            handle.write(piece)
    return digest.hexdigest()
