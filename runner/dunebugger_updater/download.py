"""Artifact downloads that a device can trust.

Only from allowed hosts (GitHub's download hosts and the configured API host), only
over https unless the configured API itself is plain http (a loopback test server),
following redirects hop by hop under the same rule, capped in size, and kept only when
the sha256 matches. A refused or corrupt download leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx

from .errors import DownloadError
from .statedir import create_new

log = logging.getLogger(__name__)

GITHUB_DOWNLOAD_HOSTS = frozenset({
    "github.com",
    "objects.githubusercontent.com",
    "release-assets.githubusercontent.com",
})
MAX_REDIRECTS = 5
CHUNK = 256 * 1024


@dataclass(frozen=True)
class DownloadPolicy:
    allowed_hosts: frozenset[str]
    http_hosts: frozenset[str]  # hosts that may be reached without TLS
    max_bytes: int
    api_host: str = ""  # the only host that is shown the API token

    @classmethod
    def for_api(cls, api_url: str, max_bytes: int) -> DownloadPolicy:
        api = httpx.URL(api_url)
        api_host = api.host or ""
        return cls(
            allowed_hosts=GITHUB_DOWNLOAD_HOSTS | {api_host},
            http_hosts=frozenset({api_host}) if api.scheme == "http" else frozenset(),
            max_bytes=max_bytes,
            api_host=api_host,
        )

    def check(self, url: str) -> httpx.URL:
        parsed = httpx.URL(url)
        host = parsed.host or ""
        if host not in self.allowed_hosts:
            raise DownloadError(f"download from {host or url!r} is not allowed (allowed: {', '.join(sorted(self.allowed_hosts))})")
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
    timeout: float = 60.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Path:
    """Fetch `url` to `destination` and return it, or raise DownloadError leaving nothing."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    try:
        async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False) as client:
            digest = await _fetch(client, url, partial, policy, token)
        if digest != sha256.lower():
            raise DownloadError(f"sha256 mismatch for {destination.name}: expected {sha256.lower()}, got {digest}")
        os.replace(partial, destination)
    except httpx.TimeoutException:
        raise DownloadError(f"download of {url} timed out after {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise DownloadError(f"download of {url} failed: {exc or type(exc).__name__}") from None
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
    timeout: float = 60.0,
    transport: httpx.AsyncBaseTransport | None = None,
) -> bytes:
    """A small file (a detached signature) under the same host, scheme and redirect
    rules and a tighter size cap. No sha256: its reader checks what it proves."""
    small = dataclasses.replace(policy, max_bytes=min(max_bytes, policy.max_bytes))
    with tempfile.TemporaryDirectory(prefix="dunebugger-fetch-") as tmp:
        target = Path(tmp) / (Path(name).name + ".partial")  # `name` is ours: it labels messages
        try:
            async with httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False) as client:
                await _fetch(client, url, target, small, token)
        except httpx.TimeoutException:
            raise DownloadError(f"download of {url} timed out after {timeout:g} s") from None
        except httpx.HTTPError as exc:
            raise DownloadError(f"download of {url} failed: {exc or type(exc).__name__}") from None
        return target.read_bytes()


async def _fetch(client: httpx.AsyncClient, url: str, target: Path, policy: DownloadPolicy, token: str | None) -> str:
    current = policy.check(url)
    for _ in range(MAX_REDIRECTS + 1):
        # The token is for the API host only; never hand it to a redirect target.
        headers = {"Accept": "application/octet-stream"}
        if token and current.host == policy.api_host:
            headers["Authorization"] = f"Bearer {token}"
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
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise DownloadError(f"{target.name.removesuffix('.partial')} is {int(declared)} bytes, more than the cap of {max_bytes}")
    digest, size = hashlib.sha256(), 0
    with os.fdopen(create_new(target), "wb") as handle:  # never through a link planted at the partial's name
        async for chunk in response.aiter_bytes(CHUNK):
            size += len(chunk)
            if size > max_bytes:
                raise DownloadError(f"download is larger than the cap of {max_bytes} bytes")
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()
