"""Small JSON files under statePath (through `StateDir`: no links followed), written
atomically (temp file, then rename) so a power cut leaves either the old or the new
content, never half of one."""

from __future__ import annotations

import json
import logging
from typing import Any

from .statedir import StateDir

log = logging.getLogger(__name__)


def read_json(state: StateDir, name: str, default: Any) -> Any:
    """The file's JSON, or `default` when it is missing or unreadable (logged).
    StateDirError (a link, statePath of another user) is not swallowed."""
    try:
        data = state.read_bytes(name)
    except OSError as exc:
        log.warning("ignoring unreadable state file %s: %s", state.path / name, exc)
        return default
    if data is None:
        return default
    try:
        return json.loads(data)
    except ValueError as exc:
        log.warning("ignoring unreadable state file %s: %s", state.path / name, exc)
        return default


def write_json(state: StateDir, name: str, data: Any) -> None:
    """Replace statePath/name with `data` atomically; raises OSError when that is impossible."""
    state.replace(name, json.dumps(data, indent=2, sort_keys=True).encode("utf-8"))
