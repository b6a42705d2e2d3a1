"""GitHub releases: the newest release of a repository, a release by tag, and the
`update-manifest.yaml` at a tag. `ReleaseSource` is what an update asks of any place
releases come from: this client, or files on the device (`local`).

One `ReleaseClient` serves many lookups over one connection pool; lookups of several
components run concurrently. Answers are cached by ETag (see http_cache) and read under
the rules of `transfer` (a size cap on decoded bytes, one deadline per request, the
token only for the API's own origin), because a device must not be knocked over by one
huge, slow or hostile answer.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol, Self
from urllib.parse import quote

import httpx
from packaging.version import Version

from ..errors import InvalidTag, RateLimited, ReleaseLookupError
from ..statedir import StateDir
from ..versions import NotAVersion, parse_version, without_v
from . import transfer
from .http_cache import EtagCache

if TYPE_CHECKING:
    from ..config import Settings
    from .local import LocalFiles

log = logging.getLogger(__name__)

MAX_API_ANSWER_BYTES = 4 * 1024 * 1024
MAX_RELEASE_NOTES_CHARS = 20_000
RELEASES_PER_PAGE = 30
MANIFEST_FILE = "update-manifest.yaml"
MAX_MANIFEST_BYTES = 256 * 1024
MAX_ERROR_ANSWER_BYTES = 64 * 1024  # enough to tell a rate limit from another refusal


@dataclass(frozen=True)
class Asset:
    name: str
    url: str
    size: int
    digest: str | None  # "sha256:<hex>" when GitHub knows it


@dataclass(frozen=True)
class Answer:
    """One API answer, read whole: its status, its headers and its decoded body."""

    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class Release:
    tag: str
    version: Version
    notes: str | None
    prerelease: bool  # flagged so by the API, or by its version (`1.2.0-beta`, `1.2.0rc1`, `1.2.0.dev1`)
    published_at: str | None
    assets: tuple[Asset, ...]
    files: LocalFiles | None = None  # already on this device (None: at GitHub, fetched by URL)

    @property
    def version_text(self) -> str:
        """The version as the release names it, its tag without "v": what a person reads
        (`version` says 1.3.0b0 where the release says 1.3.0-beta)."""
        return without_v(self.tag)

    def asset(self, name: str) -> Asset | None:
        return next((asset for asset in self.assets if asset.name == name), None)


class ReleaseSource(Protocol):
    """Where an update finds its release and the release's manifest: GitHub's API
    (`ReleaseClient`) or files on this device (`local.LocalReleases`)."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def find(self, component: str, repo: str, version: str | None, *, include_prerelease: bool) -> Release:
        """The release `version` when one is asked for, else the newest."""
        ...

    async def manifest(self, component: str, repo: str, tag: str) -> bytes | None:
        """The release's `update-manifest.yaml`, or None when it has none."""
        ...


def client_for(settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> ReleaseClient:
    """The client a device's settings describe: API, token, ETag cache under statePath."""
    return ReleaseClient(
        settings.github_api_url,
        token=settings.github_token,
        cache=EtagCache(StateDir(settings.state_path)),
        timeout=settings.http_timeout_seconds,
        transport=transport,
    )


class ReleaseClient:
    """Talks to the GitHub REST API (or anything that answers like it)."""

    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        cache: EtagCache | None = None,
        timeout: float = 15.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        headers = {
            "Accept": "application/vnd.github+json",
            "Accept-Encoding": transfer.ACCEPT_ENCODING,
            "X-GitHub-Api-Version": "2022-11-28",
            "User-Agent": "dunebugger-updater",
        }
        self._api_url = api_url.rstrip("/")
        self._api_origin = transfer.origin(self._api_url)
        self._token = token
        self._cache = cache or EtagCache(None)
        self._timeout = timeout
        self._http = httpx.AsyncClient(headers=headers, timeout=timeout, transport=transport)

    async def __aenter__(self) -> ReleaseClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()
        self._cache.save()

    async def latest(self, component: str, repo: str, *, include_prerelease: bool = False) -> Release:
        """The newest usable release: drafts never, prereleases only when asked."""
        if not include_prerelease:
            release = _release(component, await self._get_json(component, f"/repos/{repo}/releases/latest"))
            if not release.prerelease:
                return release
            # GitHub's "latest" is the newest release not *flagged* prerelease; its version may say otherwise.
            log.info(
                "%s: the latest release %s is a prerelease by its version; looking further", component, release.tag
            )
        listing = await self._get_json(component, f"/repos/{repo}/releases?per_page={RELEASES_PER_PAGE}")
        if not isinstance(listing, list):
            raise ReleaseLookupError(component, "GitHub answered the release list with something that is not a list")
        return _newest(component, [entry for entry in listing if not _is_draft(entry)], include_prerelease)

    async def find(self, component: str, repo: str, version: str | None, *, include_prerelease: bool) -> Release:
        """The release `version` when one is asked for, else the newest."""
        if version is not None:
            return checked_channel(component, await self.by_version(component, repo, version), include_prerelease)
        return await self.latest(component, repo, include_prerelease=include_prerelease)

    async def by_version(self, component: str, repo: str, version: str) -> Release:
        """The release whose tag is `v<version>` or `<version>`."""
        wanted = _parse_tag(component, version)
        for tag in (f"v{version}", version):
            try:
                release = _release(
                    component, await self._get_json(component, f"/repos/{repo}/releases/tags/{quote(tag)}")
                )
            except ReleaseLookupError as exc:
                if "404" in exc.reason:
                    continue
                raise
            if release.version == wanted:
                return release
        raise ReleaseLookupError(component, f"no release {version} in {repo}")

    async def manifest(self, component: str, repo: str, tag: str) -> bytes | None:
        """`update-manifest.yaml` at the tag, or None when the release has none."""
        url = f"{self._api_url}/repos/{repo}/contents/{MANIFEST_FILE}?ref={quote(tag)}"
        answer = await self._get(component, url, {"Accept": "application/vnd.github.raw+json"}, MAX_MANIFEST_BYTES)
        if answer.status == 404:
            return None
        _raise_for_status(component, answer, url)
        return answer.body

    async def _get_json(self, component: str, path: str) -> Any:
        url = f"{self._api_url}{path}"
        cached = self._cache.get(url)
        headers = {"If-None-Match": cached.etag} if cached else {}
        answer = await self._get(component, url, headers, MAX_API_ANSWER_BYTES)
        if answer.status == 304 and cached:
            log.debug("%s: %s not modified", component, url)
            return cached.body
        _raise_for_status(component, answer, url)
        try:
            document = json.loads(answer.body)
        except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser's stack
            raise ReleaseLookupError(component, f"GitHub answered {url} with invalid JSON") from None
        etag = answer.headers.get("etag")
        if etag:
            self._cache.put(url, etag, document)
        return document

    async def _get(self, component: str, url: str, headers: dict[str, str], limit: int) -> Answer:
        """One GET, head and body, within httpTimeoutSeconds; the body capped at `limit`
        decoded bytes (an error answer at a small cap of its own)."""
        try:
            headers = {**headers, **transfer.bearer(self._token, url, self._api_origin)}
            async with (
                transfer.deadline(self._timeout, url, "httpTimeoutSeconds"),
                self._http.stream("GET", url, headers=headers) as response,
            ):
                cap = limit if response.status_code < 400 else MAX_ERROR_ANSWER_BYTES
                return Answer(response.status_code, response.headers, await transfer.read_body(response, cap))
        except transfer.TransferError as exc:
            raise ReleaseLookupError(component, str(exc)) from None
        except httpx.TimeoutException:  # one read outlasted the whole deadline: the same story
            raise ReleaseLookupError(
                component, str(transfer.too_slow(url, self._timeout, "httpTimeoutSeconds"))
            ) from None
        except httpx.HTTPError as exc:
            raise ReleaseLookupError(component, f"cannot reach {_host(url)}: {exc or type(exc).__name__}") from None


def _raise_for_status(component: str, answer: Answer, url: str) -> None:
    status = answer.status
    if status < 300:
        return
    if status in (403, 429) and _is_rate_limit(answer):
        raise RateLimited(component, _reset_time(answer))
    if status == 404:
        raise ReleaseLookupError(component, f"not found (404 from {url}): no such repository or no release")
    if status == 401:
        raise ReleaseLookupError(component, f"GitHub refused the token (401 from {url})")
    raise ReleaseLookupError(component, f"GitHub answered {status} for {url}")


def _is_rate_limit(answer: Answer) -> bool:
    if answer.headers.get("x-ratelimit-remaining") == "0" or "retry-after" in answer.headers:
        return True
    return "rate limit" in answer.text.lower()


def _reset_time(answer: Answer) -> datetime | None:
    reset = answer.headers.get("x-ratelimit-reset")
    if reset and reset.isdigit():
        return datetime.fromtimestamp(int(reset), tz=UTC)
    retry_after = answer.headers.get("retry-after")
    if retry_after and retry_after.isdigit():
        return datetime.now(tz=UTC).replace(microsecond=0) + timedelta(seconds=int(retry_after))
    return None


def _host(url: str) -> str:
    return httpx.URL(url).host or url


def _is_draft(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("draft") is True


def _parse_tag(component: str, tag: str) -> Version:
    try:
        return parse_version(tag)
    except NotAVersion:
        raise InvalidTag(component, tag) from None


def checked_channel(component: str, release: Release, include_prerelease: bool) -> Release:
    """`release`, unless it is a prerelease and this device takes none."""
    if release.prerelease and not include_prerelease:
        raise ReleaseLookupError(
            component,
            f"release {release.tag} is a prerelease, and includePrerelease is false: "
            "set includePrerelease = true (or UPDATER_INCLUDEPRERELEASE=true) to install prereleases",
        )
    return release


def _newest(component: str, entries: list[Any], include_prerelease: bool) -> Release:
    releases, bad_tags = [], []
    for entry in entries:
        try:
            releases.append(_release(component, entry))
        except InvalidTag as exc:
            bad_tags.append(exc.tag)
    usable = [release for release in releases if include_prerelease or not release.prerelease]
    if usable:
        return max(usable, key=lambda release: release.version)
    if releases:
        raise ReleaseLookupError(component, "the repository has no published release that is not a prerelease")
    if bad_tags:
        raise InvalidTag(component, bad_tags[0])
    raise ReleaseLookupError(component, "the repository has no published release")


def _release(component: str, document: Any) -> Release:
    if not isinstance(document, dict) or not isinstance(document.get("tag_name"), str):
        raise ReleaseLookupError(component, "GitHub answered with something that is not a release")
    if document.get("draft") is True:
        raise ReleaseLookupError(component, f"release {document['tag_name']!r} is a draft")
    notes = document.get("body")
    if isinstance(notes, str) and len(notes) > MAX_RELEASE_NOTES_CHARS:
        notes = notes[:MAX_RELEASE_NOTES_CHARS] + "\n…"
    version = _parse_tag(component, document["tag_name"])
    return Release(
        tag=document["tag_name"],
        version=version,
        notes=notes if isinstance(notes, str) else None,
        # `1.2.0-beta` is a prerelease whatever the flag says: the version is what gets installed.
        prerelease=document.get("prerelease") is True or version.is_prerelease,
        published_at=document.get("published_at") if isinstance(document.get("published_at"), str) else None,
        assets=tuple(_assets(document.get("assets"))),
    )


def _assets(entries: Any) -> list[Asset]:
    assets = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        name, url = entry.get("name"), entry.get("browser_download_url")
        if not (isinstance(name, str) and isinstance(url, str)):
            continue
        size = entry["size"] if isinstance(entry.get("size"), int) else -1
        digest = entry.get("digest") if isinstance(entry.get("digest"), str) else None
        assets.append(Asset(name=name, url=url, size=size, digest=digest))
    return assets
