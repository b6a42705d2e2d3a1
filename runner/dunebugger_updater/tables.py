"""Plain-text tables for people at a terminal (the JSON messages are for programs)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from .release.status import ComponentStatus


def render(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    rows = [list(map(str, row)) for row in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *rows]
    ]
    return "\n".join(lines)


def status_table(statuses: Mapping[str, ComponentStatus]) -> str:
    rows = [
        (
            name,
            status.current_version or "-",
            status.latest_version or "-",
            _state(status),
            status.last_checked or "never",
        )
        for name, status in statuses.items()
    ]
    return render(("COMPONENT", "CURRENT", "LATEST", "STATE", "CHECKED"), rows)


def _state(status: ComponentStatus) -> str:
    """What is installed (said even when the check failed), then what the check found."""
    parts = [status.detail] if status.detail else []  # "not installed (...)", "cannot read ...", ...
    if status.error:
        parts.append(f"check failed: {status.error}")
    elif status.update_available:
        parts.append("update available")
    elif status.installed and not status.detail:
        parts.append("up to date" if status.latest_version else "not checked")
    return "; ".join(parts)
