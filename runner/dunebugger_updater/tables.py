"""Plain-text tables for people at a terminal (the JSON messages are for programs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .status import ComponentStatus


def render(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, row)) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [list(headers), *rows]]
    return "\n".join(lines)


def status_table(statuses: Mapping[str, ComponentStatus]) -> str:
    rows = [
        (name, status.current_version or "-", status.latest_version or "-", _state(status), status.last_checked or "never")
        for name, status in statuses.items()
    ]
    return render(("COMPONENT", "CURRENT", "LATEST", "STATE", "CHECKED"), rows)


def _state(status: ComponentStatus) -> str:
    if status.error:
        return f"check failed: {status.error}"
    if status.update_available:
        return "update available"
    if not status.installed:
        return status.detail or "not installed"
    if status.detail:
        return status.detail
    return "up to date" if status.latest_version else "not checked"
