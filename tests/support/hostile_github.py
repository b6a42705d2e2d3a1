"""The loopback GitHub with the answers a test provokes: any answer verbatim (hostile API
answers, redirects), GitHub's rate-limit refusal, a token it insists on, answers that
trickle in a byte at a time, and a listener over TLS.

    with HostileGitHub(require_token="s3cret") as github:
        github.rate_limit("marco-svitol/dunebugger-remote", reset_epoch=1_900_000_000)
"""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from dunebugger_updater.demo.fake_github import Answer, FakeGitHub


class HostileGitHub(FakeGitHub):
    def __init__(
        self, *, latency: float = 0.0, require_token: str | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        """`tls`: a server-side context holding the certificate to listen with."""
        super().__init__(latency=latency)
        self.require_token = require_token
        self.tls = tls
        self.scheme = "https" if tls else "http"
        self._canned: dict[str, Answer] = {}
        self._rate_limited: dict[str, int] = {}  # repo -> the epoch its limit resets at
        self._trickled: dict[str, float] = {}  # path -> seconds between two bytes of its answer

    def canned(self, path: str, status: int, headers: dict[str, str], body: bytes) -> None:
        """Answer GET `path` (without query) with exactly this, e.g. a hostile API answer."""
        with self._lock:
            self._canned[path] = (status, dict(headers), body)

    def redirect(self, path: str, location: str, status: int = 302) -> None:
        """Answer GET `path` with a redirect to `location` (hostile or not)."""
        self.canned(path, status, {"Location": location}, b"")

    def rate_limit(self, repo: str, reset_epoch: int) -> None:
        """Answer every API request about `repo` with GitHub's rate-limit 403."""
        with self._lock:
            self._rate_limited[repo] = reset_epoch

    def trickle(self, path: str, every: float) -> None:
        """Send the head of the answer to GET `path` at once, then its body one byte every
        `every` seconds: a peer never silent long enough for a read timeout to fire."""
        with self._lock:
            self._trickled[path] = every

    def reset(self) -> None:
        """Also forget every canned, rate-limited and trickled answer."""
        super().reset()
        with self._lock:
            self._canned.clear()
            self._rate_limited.clear()
            self._trickled.clear()

    def bind(self, address: tuple[str, int]) -> ThreadingHTTPServer:
        server = super().bind(address)
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        return server

    def intercept(self, path: str, query: dict[str, list[str]], headers: dict[str, str]) -> Answer | None:
        if path in self._canned:
            status, canned_headers, body = self._canned[path]
            return status, dict(canned_headers), body
        if self.require_token and headers.get("authorization") != f"Bearer {self.require_token}":
            return _json(401, {"message": "Bad credentials"})
        parts = [unquote(part) for part in path.strip("/").split("/")]
        repo = "/".join(parts[1:3])
        if len(parts) >= 4 and parts[0] == "repos" and repo in self._rate_limited:
            return self._rate_limit_answer(repo)
        return None

    def send_body(self, path: str, body: bytes, write: Callable[[bytes], object]) -> None:
        every = self._trickled.get(path, 0.0)
        pieces = [body[i : i + 1] for i in range(len(body))] if every else [body]
        for piece in pieces:
            write(piece)
            time.sleep(every)

    def _rate_limit_answer(self, repo: str) -> Answer:
        status, headers, body = _json(403, {"message": f"API rate limit exceeded for {repo}."})
        headers.update(
            {
                "X-RateLimit-Limit": "60",
                "X-RateLimit-Remaining": "0",
                "X-RateLimit-Reset": str(self._rate_limited[repo]),
            }
        )
        return status, headers, body


def _json(status: int, document: Any) -> Answer:
    return status, {"Content-Type": "application/json; charset=utf-8"}, json.dumps(document).encode()
