"""Every run, one JSON line each in statePath/history.jsonl (append-only, so a crash
can at worst lose the line being written, never the lines before it)."""

from __future__ import annotations

import json
import logging
import secrets
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from ..results import UpdateResult
from ..statedir import StateDir

log = logging.getLogger(__name__)

HISTORY_FILE = "history.jsonl"


def new_run_id(when: datetime, name: str, action: str) -> str:
    """The one shape of a run id, for runs and refusals alike: when, what, and a
    random tail so two runs in one second never share their artifacts directory."""
    return f"{when:%Y%m%dT%H%M%S}-{name}-{action}-{secrets.token_hex(3)}"


@dataclass(frozen=True)
class HistoryEntry:
    run_id: str
    action: str  # update, rollback, recovery, dry_run, fleet_update
    component: str
    from_version: str | None
    to_version: str | None
    outcome: str  # updated, up_to_date, rolled_back, refused, failed, dry_run, recovered, busy
    success: bool
    message: str
    started_at: str
    finished_at: str
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        action: str,
        result: UpdateResult,
        started: str,
        finished: str,
        run_id: str,
        details: dict[str, Any] | None = None,
    ) -> HistoryEntry:
        """The history line of an operation's result."""
        return cls(
            run_id=run_id,
            action=action,
            component=result.component,
            from_version=result.from_version,
            to_version=result.to_version,
            outcome=str(result.outcome),
            success=result.success,
            message=result.message,
            started_at=started,
            finished_at=finished,
            details=details or {},
        )


class History:
    def __init__(self, state: StateDir) -> None:
        self._state = state

    def append(self, entry: HistoryEntry) -> None:
        self._state.append(HISTORY_FILE, (json.dumps(asdict(entry), sort_keys=True) + "\n").encode("utf-8"))

    def entries(self, limit: int | None = None) -> list[HistoryEntry]:
        """The newest `limit` entries (all when None), oldest first."""
        data = self._state.read_bytes(HISTORY_FILE)
        entries = []
        for line in (data or b"").decode("utf-8", errors="replace").splitlines():
            try:
                entries.append(HistoryEntry(**json.loads(line)))
            except (ValueError, TypeError):
                log.warning("skipping an unreadable line in %s", self._state.path / HISTORY_FILE)
        return entries[-limit:] if limit is not None else entries
