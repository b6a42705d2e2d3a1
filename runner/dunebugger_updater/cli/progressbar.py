"""A one-line progress bar on a terminal, fed by `updater_progress` messages."""

from __future__ import annotations

from typing import Any, TextIO

WIDTH = 24


class ProgressBar:
    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def __call__(self, message: dict[str, Any]) -> None:
        body = message.get("body", {})
        done, total = int(body.get("done", 0)), max(int(body.get("total", 1)), 1)
        filled = WIDTH * done // total
        bar = "#" * filled + "-" * (WIDTH - filled)
        task = str(body.get("task", ""))[:48]
        self._stream.write(f"\r\x1b[K{body.get('component')} [{bar}] {done}/{total} {body.get('step')}: {task}")
        self._stream.flush()
