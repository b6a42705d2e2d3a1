"""A loopback HTTP server that answers like the parts of the GitHub API the updater
uses: releases (latest, list, by tag), tags, repository contents at a ref, and release
asset downloads with their sha256 `digest`. It speaks ETags and records every request.

GitHub itself cannot be reached from a device under test or a demo, so tests, the
benchmarks and `dunebugger-updater demo` run against this instead. A subclass may
answer a path its own way before the routing below (`intercept`), pace the answers it
sends (`send_body`) or wrap the listening socket (`bind`).

    with FakeGitHub() as github:
        github.add_release("marco-svitol/dunebugger", "v1.1.0", assets={"a.tar.gz": data})
        settings = ... githubApiUrl = github.url
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

MANIFEST_PATH = "update-manifest.yaml"

Answer = tuple[int, dict[str, str], bytes]  # status, headers, body


@dataclass
class FakeRelease:
    tag: str
    body: str = ""
    draft: bool = False
    prerelease: bool = False
    assets: dict[str, bytes] = field(default_factory=dict)
    digests: dict[str, str | None] = field(default_factory=dict)  # override: wrong or missing digest
    manifest: bytes | None = None
    published_at: str = "2026-01-01T00:00:00Z"
    asset_urls: dict[str, str] = field(default_factory=dict)  # override: browser_download_url


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    headers: dict[str, str]
    status: int
    started: float
    finished: float


class FakeGitHub:
    scheme = "http"

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self._repos: dict[str, list[FakeRelease]] = {}
        self._lock = threading.Lock()
        self.requests: list[SeenRequest] = []
        self._generation = 0  # bumped by reset(): a request still being answered then is not recorded
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- what the server holds ------------------------------------------------------

    def add_release(self, repo: str, tag: str, **fields: Any) -> FakeRelease:
        release = FakeRelease(tag=tag, **fields)
        with self._lock:
            self._repos.setdefault(repo, []).append(release)
        return release

    def add_repo(self, repo: str) -> None:
        with self._lock:
            self._repos.setdefault(repo, [])

    def reset(self) -> None:
        """Forget every repository and seen request (also those still being answered)."""
        with self._lock:
            self._generation += 1
            self._repos.clear()
            self.requests.clear()

    def asset_url(self, repo: str, tag: str, name: str) -> str:
        return f"{self.url}/{repo}/releases/download/{tag}/{name}"

    # --- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"{self.scheme}://{host!s}:{port}"

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self._server = self.bind((host, port))
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-github", daemon=True)
        self._thread.start()
        return self.url

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeGitHub:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def bind(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        """The listening server, not yet serving."""
        return _Server(address, type("Handler", (_Handler,), {"github": self}))

    # --- answers ---------------------------------------------------------------------

    def intercept(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer | None:
        """An answer to GET `path` that takes precedence over the routing; none here."""
        return None

    def send_body(self, path: str, body: bytes, write: Callable[[bytes], object]) -> None:
        """Send the body of the answer to GET `path`: all at once here."""
        write(body)

    def answer(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer:
        if (intercepted := self.intercept(path, query, headers)) is not None:
            return intercepted
        parts = [unquote(part) for part in path.strip("/").split("/")]
        if len(parts) >= 6 and parts[2:4] == ["releases", "download"]:
            return self._download(f"{parts[0]}/{parts[1]}", parts[4], "/".join(parts[5:]))
        if len(parts) < 4 or parts[0] != "repos":
            return _json(404, {"message": "Not Found"})
        repo = f"{parts[1]}/{parts[2]}"
        if repo not in self._repos:
            return _json(404, {"message": "Not Found"})
        releases = self._repos[repo]
        rest = parts[3:]
        if rest == ["releases", "latest"]:
            published = [r for r in releases if not r.draft and not r.prerelease]
            return (
                _json(200, self._release_doc(repo, published[-1]))
                if published
                else _json(404, {"message": "Not Found"})
            )
        if rest == ["releases"]:
            per_page = int(query.get("per_page", ["30"])[0])
            newest_first = list(reversed(releases))[:per_page]
            return _json(200, [self._release_doc(repo, r) for r in newest_first])
        if len(rest) == 3 and rest[:2] == ["releases", "tags"]:
            found = next((r for r in releases if r.tag == rest[2] and not r.draft), None)
            return _json(200, self._release_doc(repo, found)) if found else _json(404, {"message": "Not Found"})
        if rest == ["tags"]:
            return _json(200, [{"name": r.tag, "commit": {"sha": _sha1(r.tag)}} for r in reversed(releases)])
        if rest == ["contents", MANIFEST_PATH]:
            return self._contents(releases, query.get("ref", [""])[0], headers)
        return _json(404, {"message": "Not Found"})

    def _release_doc(self, repo: str, release: FakeRelease) -> dict[str, Any]:
        return {
            "tag_name": release.tag,
            "name": release.tag,
            "body": release.body,
            "draft": release.draft,
            "prerelease": release.prerelease,
            "published_at": release.published_at,
            "assets": [
                {
                    "name": name,
                    "size": len(data),
                    "browser_download_url": release.asset_urls.get(name) or self.asset_url(repo, release.tag, name),
                    "digest": release.digests.get(name, "sha256:" + hashlib.sha256(data).hexdigest()),
                }
                for name, data in release.assets.items()
            ],
        }

    def _contents(self, releases: list[FakeRelease], ref: str, headers: dict[str, str]) -> Answer:
        found = next((r for r in releases if r.tag == ref), None)
        if found is None or found.manifest is None:
            return _json(404, {"message": "Not Found"})
        if "raw" in headers.get("accept", ""):
            return 200, {"Content-Type": "application/vnd.github.raw+json"}, found.manifest
        encoded = base64.b64encode(found.manifest).decode()
        return _json(200, {"name": MANIFEST_PATH, "encoding": "base64", "content": encoded})

    def _download(self, repo: str, tag: str, name: str) -> Answer:
        release = next((r for r in self._repos.get(repo, []) if r.tag == tag), None)
        if release is None or name not in release.assets:
            return 404, {"Content-Type": "text/plain"}, b"Not Found"
        return 200, {"Content-Type": "application/octet-stream"}, release.assets[name]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default 5 drops concurrent connects, which then retry after 1 s


class _Handler(BaseHTTPRequestHandler):
    github: FakeGitHub
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        started, generation = time.monotonic(), self.github._generation
        if self.github.latency:
            time.sleep(self.github.latency)
        parts = urlsplit(self.path)
        headers = {key.lower(): value for key, value in self.headers.items()}
        status, answer_headers, body = self.github.answer(parts.path, parse_qs(parts.query), headers)
        if status == 200 and not answer_headers.get("Content-Type", "").startswith("application/octet"):
            etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
            answer_headers["ETag"] = etag
            if headers.get("if-none-match") == etag:
                status, body = 304, b""
        self.send_response(status)
        for key, value in answer_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.github.send_body(parts.path, body, self.wfile.write)
        except OSError:
            self.close_connection = True  # a client that stops reading (a cap, a deadline) is no error here
        with self.github._lock:
            if generation == self.github._generation:
                self.github.requests.append(SeenRequest("GET", self.path, headers, status, started, time.monotonic()))

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _json(status: int, document: Any) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(document).encode()


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()
