"""Which device goes in which batch: Ansible's `serial`, cut by the controller.

The operator's batches (`1,25%,100%`) are cut over the devices of the run in rollout
order (canary first, inventory.py) exactly as Ansible's `serial` would cut them
(a percentage of the devices in the run, at least one; the last item repeated), with
one rule more: a batch never mixes canary and other devices — a batch that would is
split where the canary group ends, so a failing canary stops the rollout before any
other device starts. The play then gets the resulting sizes as its `serial`, so the
plan printed by a dry run is the one that runs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequest

DEFAULT_BATCHES: tuple[int | str, ...] = (1, "100%")
DEFAULT_MAX_FAIL_PERCENTAGE = 0
_BATCH = re.compile(r"^(?:[1-9][0-9]{0,5}|(?:[1-9][0-9]?|100)%)$")


@dataclass(frozen=True)
class Rollout:
    """How to roll out: the operator's batches and Ansible's `max_fail_percentage`."""

    batches: tuple[int | str, ...] = DEFAULT_BATCHES
    max_fail_percentage: int | None = DEFAULT_MAX_FAIL_PERCENTAGE


@dataclass(frozen=True)
class Batches:
    batches: tuple[tuple[str, ...], ...]

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(host for batch in self.batches for host in batch)

    def batch_of(self, host: str) -> int | None:
        """1 for the first batch; None for a device not in the run."""
        return next((number for number, batch in enumerate(self.batches, start=1) if host in batch), None)

    def extra_vars(self, rollout: Rollout) -> dict[str, Any]:
        """The play's host list (in this order), `serial` and `max_fail_percentage`."""
        values: dict[str, Any] = {
            "dunebugger_hosts": list(self.hosts),
            "dunebugger_batches": [len(batch) for batch in self.batches],
        }
        if rollout.max_fail_percentage is not None:
            values["dunebugger_max_fail_percentage"] = rollout.max_fail_percentage
        return values


DEFAULT_ROLLOUT = Rollout()
NO_BATCHES = Batches(())  # a run that never got to plan (a refused release, a busy inventory)


def plan_batches(hosts: Sequence[str], canary: frozenset[str], batches: Sequence[int | str]) -> Batches:
    """Cut `hosts` (in rollout order) into batches, as described above."""
    remaining = list(hosts)
    total = len(remaining)
    cut: list[tuple[str, ...]] = []
    for item in _serial_items(batches):
        if not remaining:
            break
        size = _size(item, total)
        batch, remaining = remaining[:size], remaining[size:]
        in_canary = [host for host in batch if host in canary]
        if in_canary and len(in_canary) < len(batch):
            cut.append(tuple(in_canary))
            batch = [host for host in batch if host not in canary]
        cut.append(tuple(batch))
    return Batches(tuple(cut))


def _serial_items(batches: Sequence[int | str]):
    yield from batches
    while True:
        yield batches[-1]


def _size(item: int | str, total: int) -> int:
    """Ansible's pct_to_int: a percentage of the play's hosts, at least 1."""
    if isinstance(item, str):
        return int(int(item.rstrip("%")) / 100.0 * total) or 1
    return item


def parse_batches(text: str) -> tuple[int | str, ...]:
    """`1,25%,100%` -> (1, "25%", "100%"): host counts or percentages, as `serial` takes them."""
    items = [item.strip() for item in text.split(",")]
    bad = [item for item in items if not _BATCH.fullmatch(item)]
    if not items or bad:
        raise BadRequest(
            f"--batches: {text!r} is not a comma-separated list of host counts (1, 2, ...) or percentages (1%..100%)"
        )
    return tuple(item if item.endswith("%") else int(item) for item in items)


def check_max_fail_percentage(value: int) -> int:
    if not 0 <= value <= 100:
        raise BadRequest(f"--max-fail-percentage: {value} is not between 0 and 100")
    return value
