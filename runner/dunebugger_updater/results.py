"""The result of an update, a rollback or a recovery, as the seed's `update_result`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("updated", "up_to_date", "dry_run", "refused", "rolled_back", "failed", "busy", "recovered")


@dataclass(frozen=True)
class UpdateResult:
    component: str
    success: bool
    message: str
    outcome: str
    dry_run: bool = False
    from_version: str | None = None
    to_version: str | None = None
    run_id: str | None = None
    manifest: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def busy(cls, component: str, message: str, *, dry_run: bool = False) -> UpdateResult:
        """Another run holds the device: answered at once, never queued."""
        return cls(component, False, message, "busy", dry_run=dry_run)

    def __getitem__(self, key: str) -> Any:
        # The seed's example reads results like dicts: result['success'].
        return getattr(self, key)

    @property
    def rolled_back(self) -> bool:
        return self.outcome == "rolled_back"

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "component": self.component,
            "success": self.success,
            "message": self.message,
            "dry_run": self.dry_run,
            "outcome": self.outcome,
            "from_version": self.from_version,
            "to_version": self.to_version,
            "rolled_back": self.rolled_back,
            "run_id": self.run_id,
        }
        if self.manifest:
            body["manifest"] = self.manifest
        if self.details:
            body["details"] = dict(self.details)
        return body
