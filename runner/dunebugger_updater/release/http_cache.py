"""ETag cache for GitHub API answers, so a repeated check that finds nothing new is
answered by `304 Not Modified` (which GitHub does not count against the rate limit)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from ..statedir import StateDir
from ..statefiles import read_json, write_json

log = logging.getLogger(__name__)

CACHE_FILE = "http-cache.json"


@dataclass(frozen=True)
class CachedAnswer:
    etag: str
    body: Any


class EtagCache:
    """URL -> (ETag, decoded JSON body). Held in memory, saved on `save()`."""

    def __init__(self, state: StateDir | None) -> None:
        self._state = state
        stored = read_json(state, CACHE_FILE, {}) if state else {}
        self._entries: dict[str, dict[str, Any]] = stored if isinstance(stored, dict) else {}
        self._dirty = False

    def get(self, url: str) -> CachedAnswer | None:
        entry = self._entries.get(url)
        if not isinstance(entry, dict) or not isinstance(entry.get("etag"), str):
            return None
        return CachedAnswer(entry["etag"], entry.get("body"))

    def put(self, url: str, etag: str, body: Any) -> None:
        self._entries[url] = {"etag": etag, "body": body}
        self._dirty = True

    def save(self) -> None:
        if not (self._state and self._dirty):
            return
        try:
            write_json(self._state, CACHE_FILE, self._entries)
            self._dirty = False
        except OSError as exc:
            # A cache we cannot write only costs rate limit; it must not fail a check.
            log.warning("cannot save the HTTP cache in %s: %s", self._state.path, exc)
