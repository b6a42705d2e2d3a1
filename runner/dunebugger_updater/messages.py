"""The WebSocket/JSON messages of the seed, built from result objects.

Every message is `{"subject": ..., "source": "controller", "body": {...}}`; the CLI's
`--json` prints exactly these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from .device.history import HistoryEntry
from .release.status import ComponentStatus
from .results import UpdateResult

SOURCE = "controller"


def message(subject: str, body: Mapping[str, Any]) -> dict[str, Any]:
    return {"subject": subject, "source": SOURCE, "body": dict(body)}


def component_entry(status: ComponentStatus) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "current": status.current_version,
        "latest": status.latest_version,
        "update_available": status.update_available,
        # As in the seed: notes only with an update to read them about, else null.
        "release_notes": status.release_notes if status.update_available else None,
        "last_checked": status.last_checked,
        "installed": status.installed,
    }
    if status.error:
        entry["error"] = status.error
    if status.detail:
        entry["detail"] = status.detail
    return entry


def check_result(statuses: Mapping[str, ComponentStatus]) -> dict[str, Any]:
    components = {name: component_entry(status) for name, status in statuses.items()}
    return message("update_check_result", {"components": components})


def versions_result(statuses: Mapping[str, ComponentStatus]) -> dict[str, Any]:
    components = {name: component_entry(status) for name, status in statuses.items()}
    return message("versions_result", {"components": components})


def error(text: str, request: str | None) -> dict[str, Any]:
    return message("error", {"message": text, "request": request})


def update_result(result: UpdateResult) -> dict[str, Any]:
    return message("update_result", result.body())


def progress(component: str, run_id: str, action: str, step: str, task: str, done: int, total: int) -> dict[str, Any]:
    return message(
        "updater_progress",
        {
            "component": component,
            "run_id": run_id,
            "action": action,
            "step": step,
            "task": task,
            "done": done,
            "total": total,
        },
    )


def history(entries: Sequence[HistoryEntry]) -> dict[str, Any]:
    return message("update_history", {"entries": [asdict(entry) for entry in entries]})
