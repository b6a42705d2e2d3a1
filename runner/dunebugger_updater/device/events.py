"""ansible-runner events, parsed once at the boundary into small frozen records, and
the pure functions that read progress and outcomes from them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

# The playbooks report through set_stats (aggregate) as {STATS_KEY: {host: report}},
# because ansible-runner's stats event carries only aggregate custom stats.
STATS_KEY = "dunebugger_update_by_host"
# What a task said reaches results, history and logs: a module may echo input of any
# size (a name from an archive), so it is cut here, where it enters.
MAX_TEXT_CHARS = 2000


@dataclass(frozen=True)
class RunnerEvent:
    kind: str
    counter: int
    host: str | None = None
    task: str | None = None
    role: str | None = None
    task_path: str | None = None
    message: str | None = None
    changed: bool = False
    stats: Mapping[str, Any] = field(default_factory=dict)

    @property
    def is_task_start(self) -> bool:
        return self.kind == "playbook_on_task_start"

    @property
    def is_failure(self) -> bool:
        return self.kind in ("runner_on_failed", "runner_on_unreachable")


def parse_event(raw: Mapping[str, Any]) -> RunnerEvent:
    data: Mapping[str, Any] = raw.get("event_data") or {}
    res = data.get("res")
    result: Mapping[str, Any] = res if isinstance(res, dict) else {}
    return RunnerEvent(
        kind=str(raw.get("event", "")),
        counter=int(raw.get("counter") or 0),
        host=data.get("host"),
        task=data.get("task") or None,
        role=data.get("role") or None,
        task_path=data.get("task_path") or None,
        message=_message(result),
        changed=bool(result.get("changed")),
        stats=data if raw.get("event") == "playbook_on_stats" else {},
    )


def _message(result: Mapping[str, Any]) -> str | None:
    for key in ("msg", "stderr", "module_stderr"):
        value = result.get(key)
        if isinstance(value, str) and value.strip():
            return bounded(value.strip())
    return None


def bounded(text: str) -> str:
    """`text`, cut to MAX_TEXT_CHARS characters."""
    if len(text) <= MAX_TEXT_CHARS:
        return text
    return f"{text[:MAX_TEXT_CHARS]}... ({len(text)} characters)"


# Roles whose tasks are a phase of their own, under a name a person reads.
PHASE_OF_ROLE = {"core_rollback": "rollback", "container_rollback": "rollback", "container_update": "update"}
ROLLBACK = "rollback"


def step_of(event: RunnerEvent) -> str | None:
    """The phase a task belongs to: its task file's name inside a role (`stage`,
    `switch`, ...), or its role's phase for tasks in `main.yml`."""
    if not event.role:
        return None
    if event.task_path:
        path = PurePosixPath(event.task_path.split(":", 1)[0])
        if path.parent.name == "tasks" and path.stem not in ("main", "container"):
            return path.stem
    return PHASE_OF_ROLE.get(event.role, event.role)


@dataclass(frozen=True)
class Progress:
    step: str
    task: str
    done: int
    total: int


def progress(event: RunnerEvent, steps: Sequence[str], previous: Progress | None) -> Progress | None:
    """Progress after a task-start event, counted in the playbook's known phases. An
    update that rolls back stays in a "rollback" phase of its own from then on (its
    verification of the restored release included), where the update got to."""
    if not event.is_task_start:
        return None
    step = step_of(event)
    if ROLLBACK not in steps and (step == ROLLBACK or (previous and previous.step == ROLLBACK)):
        return Progress(step=ROLLBACK, task=event.task or "", done=previous.done if previous else 0, total=len(steps))
    if step is None or step not in steps:
        step = previous.step if previous else steps[0]
    return Progress(step=step, task=event.task or "", done=steps.index(step), total=len(steps))


@dataclass(frozen=True)
class HostReport:
    """What the playbook said about one host through set_stats, with its play stats."""

    host: str
    outcome: str
    reason: str = ""
    failed_task: str = ""
    from_version: str | None = None
    to_version: str | None = None
    failed: bool = False
    unreachable: bool = False
    changed: int = 0
    switched: bool = False  # the run got past the point where a failure needs a rollback


def host_reports(events: Iterable[RunnerEvent]) -> dict[str, HostReport]:
    stats = next((event.stats for event in reversed(list(events)) if event.kind == "playbook_on_stats"), None)
    if not stats:
        return {}
    custom = stats.get("artifact_data") or {}
    hosts = set(stats.get("processed") or {}) | set(stats.get("dark") or {})
    reports = {}
    for host in sorted(hosts):
        data = _host_custom(custom, host)
        unreachable = bool((stats.get("dark") or {}).get(host))
        failed = bool((stats.get("failures") or {}).get(host)) or unreachable
        reports[host] = HostReport(
            host=host,
            outcome=str(data.get("outcome") or ("unreachable" if unreachable else "failed" if failed else "unknown")),
            reason=bounded(str(data.get("reason") or "")),
            failed_task=bounded(str(data.get("failed_task") or "")),
            from_version=_text_or_none(data.get("from_version")),
            to_version=_text_or_none(data.get("to_version")),
            failed=failed,
            unreachable=unreachable,
            changed=int((stats.get("changed") or {}).get(host) or 0),
            switched=str(data.get("switched")).lower() in ("true", "yes", "1"),
        )
    return reports


def _host_custom(custom: Mapping[str, Any], host: str) -> Mapping[str, Any]:
    by_host = custom.get(STATS_KEY)
    report = by_host.get(host) if isinstance(by_host, Mapping) else None
    return report if isinstance(report, Mapping) else {}


def _text_or_none(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def last_failure(events: Iterable[RunnerEvent]) -> RunnerEvent | None:
    return next((event for event in reversed(list(events)) if event.is_failure), None)
