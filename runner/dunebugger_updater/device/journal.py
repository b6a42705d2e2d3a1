"""The run journal: written before a playbook touches the device, removed after its
result is in the history. Finding one at start means the last run was cut off (power
cut, kill -9), and recovery must bring the device to a known, running version."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..statedir import StateDir
from ..statefiles import read_json, write_json

JOURNAL_FILE = "journal.json"


@dataclass(frozen=True)
class JournalEntry:
    run_id: str
    action: str  # "update" or "rollback"
    component: str
    from_version: str | None
    to_version: str
    started_at: str


class Journal:
    def __init__(self, state: StateDir) -> None:
        self._state = state

    def begin(self, entry: JournalEntry) -> None:
        write_json(self._state, JOURNAL_FILE, asdict(entry))

    def pending(self) -> JournalEntry | None:
        data = read_json(self._state, JOURNAL_FILE, None)
        if not isinstance(data, dict):
            return None
        try:
            return JournalEntry(**data)
        except TypeError:
            return None

    def finish(self) -> None:
        self._state.remove(JOURNAL_FILE)
