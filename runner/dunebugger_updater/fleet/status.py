"""The fleet's one status view, read from ansible-runner events: what every device ran
before and after a rollout, how it ended, in which batch, rolled back or unreachable.

Pure functions over parsed `RunnerEvent`s (see events.py) and small frozen records;
`fleet.py` runs the playbooks and hands the events here. Outcomes per device:

    updated       the playbook switched it to the target and verified it
    rolled_back   the update failed after the switch; the playbook put the old release back
    refused       preflight refused (nothing changed)
    failed        failed before the switch (nothing changed) or the rollback itself failed
    unreachable   Ansible could not reach it (nothing known changed)
    not_started   the rollout stopped before this device's batch (untouched)
    up_to_date    it already ran the target; not part of the run
    skipped       it runs a newer version than the target; update never goes back
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import messages, tables
from ..device.events import HostReport, RunnerEvent, host_reports
from ..versions import parse_or_none, parse_version

VERSIONS_KEY = "dunebugger_versions_by_host"
GOOD_OUTCOMES = ("updated", "up_to_date", "skipped")
# Outcomes that leave the version the device had before. After `failed` the version is
# read from the device again; after `unreachable` it is unknown (None).
UNCHANGED_OUTCOMES = ("rolled_back", "refused", "not_started", "up_to_date", "skipped")


@dataclass(frozen=True)
class HostVersion:
    host: str
    version: str | None
    unreachable: bool = False
    error: str = ""

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
        }


@dataclass(frozen=True)
class FleetResult:
    component: str
    success: bool
    message: str
    version: str | None  # the target, without "v"
    release: str | None = None  # its tag
    batches: tuple[int | str, ...] = ()
    max_fail_percentage: int | None = None
    devices: tuple[DeviceStatus, ...] = ()
    run_id: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def stopped(self) -> bool:
        """True when the rollout stopped before every selected device had its turn."""
        return any(device.outcome == "not_started" for device in self.devices)

    def summary(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for device in self.devices:
            counts[device.outcome] = counts.get(device.outcome, 0) + 1
        return counts

    def body(self) -> dict[str, Any]:
        return {
            "component": self.component,
            "success": self.success,
            "message": self.message,
            "version": self.version,
            "release": self.release,
            "rollout": {
                "batches": list(self.batches),
                "max_fail_percentage": self.max_fail_percentage,
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


def host_versions(events: Sequence[RunnerEvent]) -> dict[str, HostVersion]:
    """What fleet_versions.yml found per host (unreachable hosts included)."""
    stats = final_stats(events)
    found = (stats.get("artifact_data") or {}).get(VERSIONS_KEY) or {}
    dark = stats.get("dark") or {}
    hosts = set(stats.get("processed") or {}) | set(dark) | set(found)
    result = {}
    for host in sorted(hosts, key=natural_key):
        data = found.get(host) if isinstance(found.get(host), Mapping) else {}
        version = data.get("version")
        error = str(data.get("error") or "")
        if not data and not dark.get(host):
            error = "the version playbook reported nothing for this host"
        result[host] = HostVersion(
            host, str(version) if version not in (None, "") else None, unreachable=bool(dark.get(host)), error=error
        )
    return result


def batches_by_host(events: Iterable[RunnerEvent]) -> dict[str, int]:
    """Batch number (1 = canary) of every host the run touched: ansible-playbook starts
    the play once per `serial` batch, so play-start events separate the batches."""
    batch, seen = 0, {}
    for event in events:
        if event.kind == "playbook_on_play_start":
            batch += 1
        elif event.host and event.host not in seen:
            seen[event.host] = max(batch, 1)
    return seen


def device_statuses(
    events: Sequence[RunnerEvent],
    before: Mapping[str, HostVersion],
    selected: Sequence[str],
    target: str,
) -> dict[str, DeviceStatus]:
    """Statuses of the hosts the update run was limited to (`selected`)."""
    reports = host_reports(events)
    batches = batches_by_host(events)
    statuses = {}
    for host in selected:
        version = before[host].version if host in before else None
        report = reports.get(host)
        if report is None:
            statuses[host] = DeviceStatus(
                host, "not_started", version, version, None, "the rollout stopped before this device's batch"
            )
        else:
            statuses[host] = _from_report(report, version, target, batches.get(host))
    return statuses


def _from_report(report: HostReport, before: str | None, target: str, batch: int | None) -> DeviceStatus:
    if report.unreachable:
        outcome = "unreachable"
    elif report.outcome == "updated" and not report.failed:
        outcome = "updated"
    elif report.outcome in ("rolled_back", "refused", "failed"):
        outcome = report.outcome
    else:
        outcome = "failed"
    after = target if outcome == "updated" else before if outcome in UNCHANGED_OUTCOMES else None
    reason = report.reason or ("unreachable" if outcome == "unreachable" else "")
    return DeviceStatus(report.host, outcome, report.from_version or before, after, batch, reason)


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


# --- presenting -------------------------------------------------------------------------


def fleet_result_message(result: FleetResult) -> dict[str, Any]:
    return messages.message("fleet_result", result.body())


def fleet_check_message(check: FleetCheck) -> dict[str, Any]:
    return messages.message("fleet_check_result", check.body())


def result_table(result: FleetResult) -> str:
    rows = [
        (
            d.host,
            d.batch or "-",
            d.version_before or "-",
            d.version_after or "?",
            d.outcome,
            "yes" if d.rolled_back else "no",
            "yes" if d.unreachable else "no",
            _short(d.reason),
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
            else f"error: {_short(device.error)}"
            if device.error
            else "update available"
            if available
            else "up to date"
            if available is False
            else "-"
        )
        rows.append((device.host, device.version or "-", check.latest or "-", state))
    table = tables.render(("DEVICE", "INSTALLED", "LATEST", "STATE"), rows)
    latest = (
        f"latest {check.component} release: {check.latest_tag}"
        if check.latest_tag
        else f"latest {check.component} release unknown: {check.error}"
    )
    return f"{table}\n\n{latest}"


def describe(component: str, target: str, devices: Sequence[DeviceStatus]) -> str:
    counts: dict[str, int] = {}
    for device in devices:
        counts[device.outcome] = counts.get(device.outcome, 0) + 1
    parts = ", ".join(f"{count} {outcome.replace('_', ' ')}" for outcome, count in counts.items())
    stopped = " The rollout stopped: later batches were not started." if counts.get("not_started") else ""
    return f"{component} {target} on {len(devices)} device(s): {parts}.{stopped}"


def natural_key(name: str) -> tuple:
    """h2 before h10."""
    import re

    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _short(text: str, limit: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
