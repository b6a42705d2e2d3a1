"""The fleet's one status view, read from ansible-runner events: what every device ran
before and after a rollout (or a rollback), how it ended, in which batch, and why it
failed or could not be reached (the first line of the reason).

Pure functions over parsed `RunnerEvent`s (see events.py) and small frozen records;
`fleet.py` runs the playbooks and hands the events here. Outcomes per device:

    updated       the playbook switched it to the target and verified it
    rolled_back   an update failed after the switch and the old release is back and
                  verified, or `fleet rollback` put the previous release back
    refused       refused before anything changed (preflight, or the release needs a
                  newer remote than the device runs)
    failed        failed before the switch (nothing changed) or the rollback itself failed
    unreachable   Ansible could not reach it (nothing known changed)
    not_started   the rollout stopped before this device's batch (untouched)
    up_to_date    it already ran the target; not part of the run
    skipped       it runs a newer version than the target; update never goes back
    planned       a dry run would update it, in the batch shown
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import messages, tables
from ..device.events import HostReport, RunnerEvent, host_reports
from ..versions import parse_or_none, parse_version
from .batches import NO_BATCHES, Batches

VERSIONS_KEY = "dunebugger_versions_by_host"
GOOD_OUTCOMES = ("updated", "up_to_date", "skipped", "planned")
# Outcomes that leave the version the device had before. After `failed` the version is
# read from the device again; after `unreachable` it is unknown (None).
UNCHANGED_OUTCOMES = ("rolled_back", "refused", "not_started", "up_to_date", "skipped", "planned")
NOT_STARTED = "the rollout stopped before this device's batch"
_DECORATION = re.compile(r"([^\w\s])\1{2,}")  # banners such as ssh's @@@@@@@@


@dataclass(frozen=True)
class HostVersion:
    """What the versions pass read on one device: the component's version and
    remote's (for min_remote_version), or why nothing could be read."""

    host: str
    version: str | None
    unreachable: bool = False
    error: str = ""
    remote: str | None = None

    @property
    def readable(self) -> bool:
        return not self.unreachable and not self.error


@dataclass(frozen=True)
class DeviceStatus:
    host: str
    outcome: str
    version_before: str | None
    version_after: str | None
    batch: int | None = None
    reason: str = ""
    failed_task: str = ""

    @property
    def rolled_back(self) -> bool:
        return self.outcome == "rolled_back"

    @property
    def unreachable(self) -> bool:
        return self.outcome == "unreachable"

    @property
    def ok(self) -> bool:
        return self.outcome in GOOD_OUTCOMES

    def body(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "version_before": self.version_before,
            "version_after": self.version_after,
            "outcome": self.outcome,
            "rolled_back": self.rolled_back,
            "unreachable": self.unreachable,
            "reason": self.reason,
            "failed_task": self.failed_task,
        }


@dataclass(frozen=True)
class FleetResult:
    component: str
    success: bool
    message: str
    version: str | None  # the target, without "v" (a rollback's: --to)
    release: str | None = None  # its tag
    batches: tuple[int | str, ...] = ()
    max_fail_percentage: int | None = None
    devices: tuple[DeviceStatus, ...] = ()
    run_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)
    action: str = "update"  # or "rollback"
    dry_run: bool = False
    plan: Batches = NO_BATCHES

    @property
    def stopped(self) -> bool:
        """True when the rollout stopped before every selected device had its turn."""
        return any(device.outcome == "not_started" for device in self.devices)

    def summary(self) -> dict[str, int]:
        return _counts(self.devices)

    def body(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "action": self.action,
            "success": self.success,
            "dry_run": self.dry_run,
            "message": self.message,
            "version": self.version,
            "release": self.release,
            "rollout": {
                "batches": list(self.batches),
                "max_fail_percentage": self.max_fail_percentage,
                "plan": [list(batch) for batch in self.plan.batches],
                "stopped": self.stopped,
            },
            "summary": self.summary(),
            "run_id": self.run_id,
            "devices": {device.host: device.body() for device in self.devices},
            **({"details": dict(self.details)} if self.details else {}),
        }


@dataclass(frozen=True)
class FleetCheck:
    component: str
    latest: str | None
    latest_tag: str | None
    devices: tuple[HostVersion, ...]
    error: str | None = None  # the release lookup's

    @property
    def success(self) -> bool:
        return self.error is None and all(device.readable for device in self.devices)

    def update_available(self, device: HostVersion) -> bool | None:
        if self.latest is None or not device.readable:
            return None
        current = parse_or_none(device.version)
        return current is None or parse_version(self.latest) > current

    def body(self) -> dict[str, Any]:
        devices = {
            device.host: {
                "version": device.version,
                "installed": device.version is not None,
                "update_available": self.update_available(device),
                "unreachable": device.unreachable,
                "error": device.error,
            }
            for device in self.devices
        }
        body: dict[str, Any] = {
            "component": self.component,
            "latest": self.latest,
            "latest_tag": self.latest_tag,
            "devices": devices,
        }
        if self.error:
            body["error"] = self.error
        return body


# --- reading events ---------------------------------------------------------------------


def final_stats(events: Iterable[RunnerEvent]) -> Mapping[str, Any]:
    return next((event.stats for event in reversed(list(events)) if event.kind == "playbook_on_stats"), {})


def host_versions(events: Sequence[RunnerEvent], component: str, hosts: Sequence[str]) -> dict[str, HostVersion]:
    """What fleet_versions.yml found on each of `hosts`."""
    stats = final_stats(events)
    found = _mapping(_mapping(stats.get("artifact_data")).get(VERSIONS_KEY))
    dark = _mapping(stats.get("dark"))
    failures = last_failures(events)
    result = {}
    for host in hosts:
        if dark.get(host):
            result[host] = HostVersion(host, None, unreachable=True, error=failures.get(host) or "unreachable")
            continue
        data = _mapping(found.get(host))
        versions = _mapping(data.get("versions"))
        entry, remote = _mapping(versions.get(component)), _mapping(versions.get("remote"))
        error = str(data.get("error") or entry.get("error") or "")
        if not data:
            error = failures.get(host) or "the versions playbook reported nothing for this device"
        result[host] = HostVersion(
            host, _text(entry.get("version")), error=first_line(error), remote=_text(remote.get("version"))
        )
    return result


def last_failures(events: Iterable[RunnerEvent]) -> dict[str, str]:
    """host -> first line of the message of its last failed or unreachable task."""
    failures = {}
    for event in events:
        if event.is_failure and event.host and event.message:
            failures[event.host] = first_line(event.message)
    return failures


def device_statuses(
    events: Sequence[RunnerEvent],
    before: Mapping[str, HostVersion],
    plan: Batches,
    action: str = "update",
) -> dict[str, DeviceStatus]:
    """Statuses of the devices of an update or rollback run (`plan`), in plan order."""
    reports = host_reports(events)
    failures = last_failures(events)
    statuses = {}
    for host in plan.hosts:
        version = before[host].version if host in before else None
        report = reports.get(host)
        if report is None:
            statuses[host] = DeviceStatus(host, "not_started", version, version, plan.batch_of(host), NOT_STARTED)
        else:
            statuses[host] = _from_report(report, version, action, plan.batch_of(host), failures.get(host, ""))
    return statuses


def _from_report(report: HostReport, before: str | None, action: str, batch: int | None, failure: str) -> DeviceStatus:
    outcome = _outcome(report)
    if outcome == "rolled_back" and report.from_version and report.from_version == report.to_version:
        outcome = "up_to_date"  # a rollback that found the device there already
    if outcome == "updated" or (action == "rollback" and outcome in ("rolled_back", "up_to_date")):
        after = report.to_version
    else:
        after = before if outcome in UNCHANGED_OUTCOMES else None
    settled = outcome in GOOD_OUTCOMES or (action == "rollback" and outcome == "rolled_back")
    reason = "" if settled else first_line(report.reason) or failure
    return DeviceStatus(
        report.host, outcome, report.from_version or before, after, batch, reason, "" if settled else report.failed_task
    )


def _outcome(report: HostReport) -> str:
    if report.unreachable:
        return "unreachable"
    if report.outcome in ("updated", "rolled_back") and not report.failed:
        return report.outcome
    if report.outcome in ("rolled_back", "refused", "failed"):
        return report.outcome
    return "failed"


def not_run(host: HostVersion, target: str) -> DeviceStatus | None:
    """The status of a device that needs no update (same or newer version), else None."""
    current = parse_or_none(host.version) if host.readable else None
    wanted = parse_version(target)
    if current is None or current < wanted:
        return None
    if current == wanted:
        return DeviceStatus(host.host, "up_to_date", host.version, host.version, None, "already runs the target")
    return DeviceStatus(
        host.host,
        "skipped",
        host.version,
        host.version,
        None,
        f"runs {host.version}, newer than {target}; update never goes back",
    )


def unreachable(host: HostVersion) -> DeviceStatus:
    return DeviceStatus(host.host, "unreachable", None, None, None, host.error)


def first_line(text: str) -> str:
    """The first line that says something. A line that ends in ":" introduces more (ssh's
    own output, whose verdict is its last line): that last line is added to it."""
    lines = [line for line in (_DECORATION.sub("", line).strip() for line in text.splitlines()) if line]
    if not lines:
        return ""
    if len(lines) > 1 and lines[0].endswith(":"):
        return f"{lines[0]} {lines[-1]}"
    return lines[0]


def _mapping(value: Any) -> Mapping[str, Any]:
    """`value` if the report holds a mapping there, else an empty one."""
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


# --- presenting -------------------------------------------------------------------------


def fleet_result_message(result: FleetResult) -> dict[str, Any]:
    return messages.message("fleet_result", result.body())


def fleet_check_message(check: FleetCheck) -> dict[str, Any]:
    return messages.message("fleet_check_result", check.body())


def result_table(result: FleetResult) -> str:
    if result.dry_run:
        planned = [(d.host, _batch(d), d.version_before or "-", d.outcome, _reason(d)) for d in result.devices]
        table = tables.render(("DEVICE", "BATCH", "INSTALLED", "PLAN", "REASON"), planned)
        return f"{table}\n\n{result.message}"
    rows = [
        (
            d.host,
            _batch(d),
            d.version_before or "-",
            d.version_after or "?",
            d.outcome,
            "yes" if d.rolled_back else "no",
            "yes" if d.unreachable else "no",
            _reason(d),
        )
        for d in result.devices
    ]
    table = tables.render(
        ("DEVICE", "BATCH", "BEFORE", "AFTER", "RESULT", "ROLLED BACK", "UNREACHABLE", "REASON"), rows
    )
    return f"{table}\n\n{result.message}"


def check_table(check: FleetCheck) -> str:
    rows = []
    for device in check.devices:
        available = check.update_available(device)
        state = (
            "unreachable"
            if device.unreachable
            else "error"
            if device.error
            else "update available"
            if available
            else "up to date"
            if available is False
            else "-"
        )
        rows.append((device.host, device.version or "-", check.latest or "-", state, device.error))
    table = tables.render(("DEVICE", "INSTALLED", "LATEST", "STATE", "REASON"), rows)
    latest = (
        f"latest {check.component} release: {check.latest_tag}"
        if check.latest_tag
        else f"latest {check.component} release unknown: {check.error}"
    )
    return f"{table}\n\n{latest}"


def describe(component: str, action: str, target: str | None, devices: Sequence[DeviceStatus]) -> str:
    parts = ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in _counts(devices).items())
    stopped = (
        " The rollout stopped: later batches were not started."
        if any(device.outcome == "not_started" for device in devices)
        else ""
    )
    what = (
        f"{component} {target}" if action == "update" else f"{component} rollback" + (f" to {target}" if target else "")
    )
    return f"{what} on {len(devices)} device(s): {parts}.{stopped}"


def describe_plan(component: str, target: str, release: str, plan: Batches, devices: Sequence[DeviceStatus]) -> str:
    batches = " ".join(f"[{', '.join(batch)}]" for batch in plan.batches) or "none"
    others = ", ".join(
        f"{count} {outcome.replace('_', ' ')}" for outcome, count in _counts(devices).items() if outcome != "planned"
    )
    return (
        f"Dry run: {component} {target} (release {release}) to {len(plan.hosts)} device(s) in "
        f"{len(plan.batches)} batch(es): {batches}" + (f"; {others}" if others else "") + ". Nothing was changed."
    )


def _counts(devices: Iterable[DeviceStatus]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for device in devices:
        counts[device.outcome] = counts.get(device.outcome, 0) + 1
    return counts


def _batch(device: DeviceStatus) -> str:
    return str(device.batch) if device.batch else "-"


def _reason(device: DeviceStatus) -> str:
    """The whole first line: a table cell cut short would hide the cause (it is the last column)."""
    return f"{device.failed_task}: {device.reason}" if device.failed_task else device.reason
