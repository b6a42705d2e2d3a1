"""Download rules with a production configuration (the API is https://api.github.com),
served offline by an injected httpx transport: https only, GitHub's hosts only, every
redirect hop checked, the token only for the API host, a size cap without a
Content-Length."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from dunebugger_updater.demo.sandbox import releases
from support.attack_kit import ASSET, assert_refused, attempt

pytestmark = pytest.mark.integration

API = "https://api.github.com"
REPO = "marco-svitol/dunebugger"
TOKEN = "ghp_secret_token_for_the_api_only"
ENV = {"UPDATER_GITHUBAPIURL": API, "UPDATER_GITHUBTOKEN": TOKEN}


class Body(httpx.AsyncByteStream):
    """A body the client reads off the wire, as from a real server (bytes given as
    `content=` would be read, and decoded, by httpx before the updater sees them)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self):
        yield self._data


def answer(status: int, data: bytes) -> httpx.Response:
    return httpx.Response(status, stream=Body(data))


class FakeInternet:
    """api.github.com plus whatever `routes` answer; records every request."""

    def __init__(self, asset_url: str, archive: bytes, routes: dict[str, httpx.Response]) -> None:
        self.seen: list[httpx.Request] = []
        self.routes = routes
        self.release = {
            "tag_name": "v1.1.0", "body": "", "draft": False, "prerelease": False,
            "assets": [{"name": ASSET, "size": len(archive), "browser_download_url": asset_url,
                        "digest": "sha256:" + hashlib.sha256(archive).hexdigest()}],
        }

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        url = str(request.url).split("?")[0]
        if url == f"{API}/repos/{REPO}/releases/latest":
            return answer(200, json.dumps(self.release).encode())
        if url in self.routes:
            return self.routes[url]
        return answer(404, b"Not Found")

    def hosts(self) -> list[str]:
        return [request.url.host for request in self.seen]

    def authorized_hosts(self) -> set[str]:
        return {request.url.host for request in self.seen if "authorization" in request.headers}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return releases.build_release(tmp_path_factory.mktemp("dist"), "1.1.0").read_bytes()


def redirect(location: str) -> httpx.Response:
    return httpx.Response(302, headers={"Location": location})


GH_ASSET = f"https://github.com/{REPO}/releases/download/v1.1.0/{ASSET}"
OBJECTS = "https://objects.githubusercontent.com/release-asset/123"


async def test_the_usual_github_redirect_chain_is_followed_and_verified(device, archive):
    internet = FakeInternet(GH_ASSET, archive, {GH_ASSET: redirect(OBJECTS), OBJECTS: answer(200, archive)})
    result, _ = await attempt(device, environ=ENV, transport=httpx.MockTransport(internet))
    assert result.success and result.details["verified"], result.message
    assert internet.hosts()[-2:] == ["github.com", "objects.githubusercontent.com"]
    assert internet.authorized_hosts() == {"api.github.com"}, "the token left the API host"


@pytest.mark.parametrize(("asset_url", "routes", "expect"), [
    (GH_ASSET.replace("https:", "http:"), {}, "must use https"),
    ("https://evil.example/x.tar.gz", {}, "download from 'evil.example' is not allowed"),
    ("https://api.github.com.evil.example/x.tar.gz", {}, "is not allowed"),
    ("https://github.com@evil.example/x.tar.gz", {}, "download from 'evil.example' is not allowed"),
    (GH_ASSET, {GH_ASSET: redirect("https://evil.example/x.tar.gz")}, "download from 'evil.example' is not allowed"),
    (GH_ASSET, {GH_ASSET: redirect(OBJECTS.replace("https:", "http:"))}, "must use https"),
    (GH_ASSET, {GH_ASSET: redirect("http://127.0.0.1:8080/x")}, "download from '127.0.0.1' is not allowed"),
])
async def test_download_outside_the_rules_is_refused(device, archive, asset_url, routes, expect):
    internet = FakeInternet(asset_url, archive, routes)
    await assert_refused(device, expect, environ=ENV, transport=httpx.MockTransport(internet))
    assert "evil.example" not in internet.hosts() and "127.0.0.1" not in internet.hosts()
    assert not any(request.url.scheme == "http" for request in internet.seen), "a plain-http request was made"


async def test_stream_without_content_length_is_capped(device, archive):
    async def endless():
        for _ in range(3):
            yield b"\0" * (1024 * 1024)

    internet = FakeInternet(GH_ASSET, archive, {GH_ASSET: httpx.Response(200, content=endless())})
    await assert_refused(device, "larger than the cap of 1048576 bytes", environ={**ENV, "UPDATER_MAXDOWNLOADMB": "1"},
                         transport=httpx.MockTransport(internet))
