"""Every run, one JSON line each in statePath/history.jsonl (append-only, so a crash
can at worst lose the line being written, never the lines before it)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HistoryEntry:
    run_id: str
    action: str  # update, rollback, recovery, dry_run
    component: str
    from_version: str | None
    to_version: str | None
    outcome: str  # updated, up_to_date, rolled_back, refused, failed, dry_run, recovered
    success: bool
    message: str
    started_at: str
    finished_at: str
    details: dict[str, Any] = field(default_factory=dict)


class History:
    def __init__(self, path: Path) -> None:
        self._path = path

    def append(self, entry: HistoryEntry) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(asdict(entry), sort_keys=True) + "\n"
        with self._path.open("a", encoding="utf-8") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        try:
            lines = self._path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        entries = []
        for line in lines:
            try:
                entries.append(HistoryEntry(**json.loads(line)))
            except (ValueError, TypeError):
                log.warning("skipping an unreadable line in %s", self._path)
        return entries[-limit:] if limit else entries
