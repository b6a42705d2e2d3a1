"""The result of an update, a rollback or a recovery, as the seed's `update_result`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How an operation ended, as the `outcome` of `update_result` says it."""

    UPDATED = "updated"  # the new release runs, verified
    UP_TO_DATE = "up_to_date"  # nothing to do
    DRY_RUN = "dry_run"  # planned and verified, nothing changed
    REFUSED = "refused"  # not started: nothing changed
    ROLLED_BACK = "rolled_back"  # the previous release runs again and passes its own checks
    FAILED = "failed"  # the device may need attention (see the message)
    BUSY = "busy"  # another operation holds the device
    RECOVERED = "recovered"  # a run cut off by a crash was settled


@dataclass(frozen=True)
class UpdateResult:
    component: str
    success: bool
    message: str
    outcome: Outcome
    dry_run: bool = False
    from_version: str | None = None
    to_version: str | None = None
    run_id: str | None = None
    manifest: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outcome", Outcome(self.outcome))  # names outside the vocabulary fail here

    @classmethod
    def busy(cls, component: str, message: str, *, dry_run: bool = False) -> UpdateResult:
        """Another run holds the device: answered at once, never queued."""
        return cls(component, False, message, Outcome.BUSY, dry_run=dry_run)

    @classmethod
    def refused(cls, component: str, action: str, reason: str, **fields: Any) -> UpdateResult:
        """Not started, because of `reason`: nothing on the device changed."""
        return cls(
            component,
            False,
            f"{component} {action} refused: {reason.rstrip('.')}. Nothing was changed.",
            Outcome.REFUSED,
            **fields,
        )

    def __getitem__(self, key: str) -> Any:
        # The seed's example reads results like dicts: result['success'].
        return getattr(self, key)

    @property
    def rolled_back(self) -> bool:
        return self.outcome == Outcome.ROLLED_BACK

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "component": self.component,
            "success": self.success,
            "message": self.message,
            "dry_run": self.dry_run,
            "outcome": self.outcome.value,
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
