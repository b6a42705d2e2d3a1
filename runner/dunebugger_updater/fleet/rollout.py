"""Fleet updates and rollbacks: the same vetted playbooks, over an Ansible inventory.

Ansible does the orchestration: the play's host list and `serial` make the batches
(cut by plan.py, canary first), `max_fail_percentage` stops the rollout when a
batch fails too much (later batches are never started), `forks` sets the parallelism,
and every failed device is rolled back by its own play (block/rescue). This module
decides what every device gets and reads back what happened:

    lock the inventory (one rollout or rollback at a time over it)
      -> read the inventory (ansible-inventory: a file it cannot parse is bad input)
      -> at once: resolve the release on the controller (one lookup, its manifest, one
         verified download for core) | read every device's versions (fleet_versions.yml)
      -> leave out devices that are unreachable, already on (or past) the target, or run
         a remote older than the release's min_remote_version
      -> plan the batches                                  [a dry run stops here]
      -> the update playbook over the rest, in the planned order and batches
      -> devices a run stopped at its deadline left unsettled: the rollback playbook
      -> versions after, only for devices whose outcome leaves them in doubt
      -> FleetResult (the `fleet_result` message and the table), and the history

Device settings (paths, service manager, compose file, health URL, ...) come from the
inventory; the controller passes only what is the same for every device: the release
and the checks its manifest asks for. So `ansible-playbook -i INVENTORY
playbooks/update_core.yml -e ...` by hand does the same (docs/fleet.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..config import ComponentSpec, Settings
from ..device.container_procedure import ContainerProcedure
from ..device.core_procedure import CoreProcedure
from ..device.events import HostReport, host_reports
from ..device.history import History, HistoryEntry, new_run_id
from ..device.lock import DeviceLock
from ..device.plan import Plan, PreparedUpdate, Procedure, resolve_plan
from ..device.playbooks import PlaybookRun, PlaybookRunner
from ..errors import BadRequest, Busy, DownloadError, ManifestError, PreflightError, ReleaseLookupError, os_reason
from ..files import kind_of
from ..release.manifest import DeviceNames
from ..release.releases import client_for
from ..statedir import StateDir
from ..versions import parse_or_none, parse_version, requested_version
from .batches import DEFAULT_ROLLOUT, Batches, Rollout, plan_batches
from .connection import ansible_settings
from .inventory import Inventory, read_inventory
from .status import (
    DeviceStatus,
    FleetCheck,
    FleetResult,
    HostVersion,
    describe,
    describe_plan,
    device_statuses,
    host_versions,
    not_run,
    unreachable,
)

log = logging.getLogger(__name__)

VERSIONS_PLAYBOOK = "fleet_versions"
DEFAULT_FORKS = 50
ROLLED_BACK = ("rolled_back", "up_to_date")  # a fleet rollback's good outcomes


@dataclass(frozen=True)
class FleetTarget:
    """Which devices: an inventory file, an optional Ansible `--limit` pattern, forks."""

    inventory: Path
    limit: str | None = None
    forks: int | None = None

    def checked(self) -> FleetTarget:
        try:
            mode = self.inventory.stat().st_mode
        except FileNotFoundError:
            raise BadRequest(f"inventory {self.inventory} does not exist") from None
        except OSError as exc:
            raise BadRequest(f"cannot read inventory {self.inventory}: {os_reason(exc)}") from None
        if not stat.S_ISREG(mode):  # a FIFO would hang ansible-inventory
            raise BadRequest(f"inventory {self.inventory} is {kind_of(mode)}: name the inventory file (-i FILE)")
        if self.forks is not None and not 1 <= self.forks <= 500:
            raise BadRequest(f"--forks: {self.forks} is not between 1 and 500")
        if self.limit is not None and not self.limit.strip():
            raise BadRequest("--limit: empty pattern")
        return FleetTarget(self.inventory.resolve(), self.limit, self.forks)

    @property
    def forks_or_default(self) -> int:
        return self.forks or DEFAULT_FORKS  # Ansible never starts more workers than a batch has hosts


class FleetUpdater:
    def __init__(self, settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._transport = transport
        self._state = StateDir(settings.state_path)
        self._core = CoreProcedure(settings, transport=transport)
        self._container = ContainerProcedure(settings)
        self._history = History(self._state)
        self._ansible = ansible_settings(settings.fleet_strategy)

    # --- public --------------------------------------------------------------------

    async def check(self, component: str, target: FleetTarget) -> FleetCheck:
        """Installed versions on every device, and the newest release (one lookup)."""
        spec = self._settings.component(component)
        target = target.checked()
        self._state.ready()  # the runs' artifacts go there
        inventory = await asyncio.to_thread(read_inventory, target.inventory, target.limit)
        versions = asyncio.create_task(self._versions(spec, target, inventory.hosts))
        latest, error = None, None
        try:
            async with client_for(self._settings, self._transport) as client:
                latest = await client.latest(spec.name, spec.repo, include_prerelease=self._settings.include_prerelease)
        except ReleaseLookupError as exc:
            error = exc.reason
        devices = await versions
        return FleetCheck(
            spec.name,
            latest.version_text if latest else None,
            latest.tag if latest else None,
            tuple(devices.values()),
            error,
        )

    async def update(
        self,
        component: str,
        target: FleetTarget,
        *,
        version: str | None = None,
        rollout: Rollout = DEFAULT_ROLLOUT,
        dry_run: bool = False,
    ) -> FleetResult:
        """Roll one release out (or plan it: `dry_run`); the run, refused or not, ends
        up in the controller's history. A rollout over an inventory another rollout
        holds is answered busy."""
        spec = self._settings.component(component)
        target = target.checked()
        version = requested_version(version, "--version") if version is not None else None
        self._state.ready()  # the history, the download and the runs' artifacts go there
        operation = lambda: self._update(spec, target, version, rollout, dry_run)  # noqa: E731
        if dry_run:
            return await self._recorded("fleet_dry_run", spec, operation)
        return await self._recorded("fleet_update", spec, lambda: self._locked(spec, "update", target, operation))

    async def rollback(self, component: str, target: FleetTarget, *, to: str | None = None) -> FleetResult:
        """Every selected device back to its previous release, or to `to`."""
        spec = self._settings.component(component)
        target = target.checked()
        to = requested_version(to, "--to") if to is not None else None
        self._state.ready()  # the lock, the history and the runs' artifacts go there
        operation = lambda: self._rollback(spec, target, to)  # noqa: E731
        return await self._recorded("fleet_rollback", spec, lambda: self._locked(spec, "rollback", target, operation))

    # --- stages --------------------------------------------------------------------

    async def _update(
        self, spec: ComponentSpec, target: FleetTarget, version: str | None, rollout: Rollout, dry_run: bool
    ) -> FleetResult:
        inventory = await asyncio.to_thread(read_inventory, target.inventory, target.limit)
        common: dict[str, Any] = {
            "batches": rollout.batches,
            "max_fail_percentage": rollout.max_fail_percentage,
            "dry_run": dry_run,
        }
        versions = asyncio.create_task(self._versions(spec, target, inventory.hosts))
        try:
            resolved, prepared = await self._resolve(spec, version)
        except (ReleaseLookupError, ManifestError, DownloadError, PreflightError) as exc:
            await asyncio.gather(versions, return_exceptions=True)  # read-only; let it end
            return FleetResult(
                spec.name,
                False,
                f"{spec.name} fleet update refused: {exc.reason.rstrip('.')}. Nothing was changed.",
                version,
                **common,
            )
        before = await versions
        statuses = self._left_out(spec, before, resolved)
        plan = plan_batches(
            [host for host in inventory.hosts if host not in statuses], inventory.canary, rollout.batches
        )
        details = {
            **prepared.details,
            "manifest": resolved.manifest_note,
            "inventory": str(target.inventory),
            "limit": target.limit,
        }
        if dry_run:
            statuses.update(
                {
                    host: DeviceStatus(
                        host,
                        "planned",
                        before[host].version,
                        None,
                        plan.batch_of(host),
                        "canary" if host in inventory.canary else "",
                    )
                    for host in plan.hosts
                }
            )
            devices = self._in_order(inventory, statuses)
            return FleetResult(
                spec.name,
                all(device.ok for device in devices),
                describe_plan(spec.name, resolved.version_text, resolved.release.tag, plan, devices),
                resolved.version_text,
                resolved.release.tag,
                devices=devices,
                plan=plan,
                details=details,
                **common,
            )
        run = None
        if plan.hosts:
            values = {**prepared.extra_vars, **plan.extra_vars(rollout)}
            run = await self._run(self._procedure(spec).update_playbook, values, target, plan, spec.name, "update")
            statuses.update(device_statuses(run.events, before, plan))
            if run.cut_off:
                statuses.update(await self._settle_cut_off(spec, target, run, plan, before))
            statuses.update(await self._settle_unknown(spec, target, statuses))
        devices = self._in_order(inventory, statuses)
        return FleetResult(
            spec.name,
            all(device.ok for device in devices),
            describe(spec.name, "update", resolved.version_text, devices),
            resolved.version_text,
            resolved.release.tag,
            devices=devices,
            run_id=run.run_id if run else None,
            plan=plan,
            details=details,
            **common,
        )

    async def _rollback(self, spec: ComponentSpec, target: FleetTarget, to: str | None) -> FleetResult:
        inventory = await asyncio.to_thread(read_inventory, target.inventory, target.limit)
        before = await self._versions(spec, target, inventory.hosts)
        statuses = {host: unreachable(found) for host, found in before.items() if found.unreachable}
        reachable = tuple(host for host in inventory.hosts if host not in statuses)
        plan = Batches((reachable,) if reachable else ())
        run = None
        if reachable:
            values = self._procedure(spec).rollback_target_vars(spec, to)
            run = await self._run(
                self._procedure(spec).rollback_playbook,
                {**values, "dunebugger_hosts": list(reachable)},
                target,
                plan,
                spec.name,
                "rollback",
            )
            statuses.update(device_statuses(run.events, before, plan, action="rollback"))
            statuses.update(await self._settle_unknown(spec, target, statuses))
        devices = self._in_order(inventory, statuses)
        return FleetResult(
            spec.name,
            all(device.outcome in ROLLED_BACK for device in devices),
            describe(spec.name, "rollback", to, devices),
            to,
            devices=devices,
            run_id=run.run_id if run else None,
            plan=plan,
            action="rollback",
            details={"inventory": str(target.inventory), "limit": target.limit},
        )

    async def _resolve(self, spec: ComponentSpec, version: str | None) -> tuple[Plan, PreparedUpdate]:
        """The release, its manifest, and what every device gets (for core: the archive,
        downloaded and verified once)."""
        procedure = self._procedure(spec)
        async with client_for(self._settings, self._transport) as client:
            release = await client.find(
                spec.name, spec.repo, version, include_prerelease=self._settings.include_prerelease
            )
            # Device paths differ across a fleet: the playbook checks the script path on each device.
            plan = await resolve_plan(
                client, self._settings, procedure, release, spec, from_version=None, device=DeviceNames.of(spec)
            )
        return plan, await procedure.prepare_release(plan)

    def _left_out(self, spec: ComponentSpec, before: dict[str, HostVersion], resolved: Plan) -> dict[str, DeviceStatus]:
        """Devices the rollout leaves alone, and why: unreachable, no update needed, or
        the release needs a newer remote than the device runs."""
        needs = resolved.manifest.min_remote_version if resolved.manifest and spec.name != "remote" else None
        oldest = parse_version(needs) if needs else None
        statuses = {}
        for host, found in before.items():
            if found.unreachable:
                statuses[host] = unreachable(found)
            elif (status := not_run(found, resolved.version_text)) is not None:
                statuses[host] = status
            elif oldest is not None and (remote := parse_or_none(found.remote)) is not None and remote < oldest:
                statuses[host] = DeviceStatus(
                    host,
                    "refused",
                    found.version,
                    found.version,
                    None,
                    f"this release needs remote {needs} or newer (runs {found.remote}): update remote first",
                )
        return statuses

    async def _versions(
        self, spec: ComponentSpec, target: FleetTarget, hosts: tuple[str, ...]
    ) -> dict[str, HostVersion]:
        """What every host runs: the component and, for min_remote_version, remote."""
        components = {
            name: {"type": self._settings.component(name).type, "service": self._settings.component(name).service}
            for name in (spec.name, "remote")
            if name in self._settings.components
        }
        run = await self._run(
            VERSIONS_PLAYBOOK,
            {"fleet_versions_components": components, "dunebugger_hosts": list(hosts)},
            target,
            Batches((hosts,)),
            spec.name,
            "versions",
        )
        return host_versions(run.events, spec.name, hosts)

    async def _settle_unknown(
        self, spec: ComponentSpec, target: FleetTarget, statuses: dict[str, DeviceStatus]
    ) -> dict[str, DeviceStatus]:
        """A `failed` device either changed nothing or failed its rollback: ask it."""
        unknown = tuple(host for host, status in statuses.items() if status.outcome == "failed")
        if not unknown:
            return {}
        after = await self._versions(spec, target, unknown)
        return {host: _with_after(statuses[host], after.get(host)) for host in unknown}

    async def _settle_cut_off(
        self, spec: ComponentSpec, target: FleetTarget, cut: PlaybookRun, plan: Batches, before: dict[str, HostVersion]
    ) -> dict[str, DeviceStatus]:
        """The run was stopped at its deadline: a device it left without a result may be
        between switch and verification. The rollback playbook puts each back on the
        version it ran before (a no-op where nothing was switched) and verifies it."""
        started = {event.host for event in cut.events if event.host}
        reports = host_reports(cut.events)
        left = {host for host in plan.hosts if host in started and not _reported(reports.get(host))}
        settled: dict[str, DeviceStatus] = {}
        for version in sorted({before[host].version or "" for host in left}):
            group = tuple(host for host in plan.hosts if host in left and (before[host].version or "") == version)
            values = self._procedure(spec).rollback_target_vars(spec, version or None)
            run = await self._run(
                self._procedure(spec).rollback_playbook,
                {**values, "dunebugger_hosts": list(group)},
                target,
                Batches((group,)),
                spec.name,
                "rollback",
            )
            back = device_statuses(run.events, before, Batches((group,)), action="rollback")
            settled.update(
                {
                    host: _after_deadline(
                        back[host], before[host], plan.batch_of(host), self._settings.playbook_timeout_minutes
                    )
                    for host in group
                }
            )
        return settled

    # --- running -------------------------------------------------------------------

    async def _run(
        self, playbook: str, values: dict[str, Any], target: FleetTarget, plan: Batches, component: str, action: str
    ) -> PlaybookRun:
        """One playbook run over the plan's hosts (and no other), with a deadline of
        playbookTimeoutMinutes for every round of devices it goes through."""
        forks = target.forks_or_default
        rounds = sum(math.ceil(len(batch) / forks) for batch in plan.batches) or 1
        runner = PlaybookRunner(
            self._state.subdir("fleet-runs"),
            timeout_seconds=self._settings.playbook_timeout_minutes * 60 * rounds,
            settings=self._ansible,
        )
        run_id = new_run_id(datetime.now(), component, f"fleet-{action}")
        log.info(
            "running %s over %d device(s) of %s (forks %d) as %s",
            playbook,
            len(plan.hosts),
            target.inventory,
            forks,
            run_id,
        )
        return await asyncio.to_thread(
            runner.run,
            playbook,
            values,
            run_id=run_id,
            inventory=target.inventory,
            limit=",".join(plan.hosts),
            forks=forks,
        )

    async def _locked(
        self, spec: ComponentSpec, action: str, target: FleetTarget, operation: Callable[[], Awaitable[FleetResult]]
    ) -> FleetResult:
        key = hashlib.sha256(str(target.inventory).encode()).hexdigest()[:16]
        lock = DeviceLock(self._state, f"fleet-{key}.lock", place=f"over inventory {target.inventory}")
        lock.acquire(f"fleet {action} of {spec.name}")
        with lock:
            return await operation()

    async def _recorded(
        self, action: str, spec: ComponentSpec, operation: Callable[[], Awaitable[FleetResult]]
    ) -> FleetResult:
        """Run and record in the history; a busy answer changed nothing and is not recorded."""
        started = _now()
        try:
            result = await operation()
        except Busy as exc:
            return FleetResult(spec.name, False, str(exc), None, action=action.removeprefix("fleet_"))
        self._history.append(
            HistoryEntry(
                run_id=result.run_id or new_run_id(datetime.now(), result.component, action),
                action=action,
                component=result.component,
                from_version=None,
                to_version=result.version,
                outcome=_history_outcome(result),
                success=result.success,
                message=result.message,
                started_at=started,
                finished_at=_now(),
                details={"devices": {device.host: device.outcome for device in result.devices}, **result.details},
            )
        )
        return result

    # --- helpers -------------------------------------------------------------------

    def _procedure(self, spec: ComponentSpec) -> Procedure:
        return self._container if spec.is_container else self._core

    @staticmethod
    def _in_order(inventory: Inventory, statuses: dict[str, DeviceStatus]) -> tuple[DeviceStatus, ...]:
        return tuple(statuses[host] for host in inventory.hosts)


def _reported(report: HostReport | None) -> bool:
    """Whether the play said how the device ended (a run cut off says nothing for some)."""
    return report is not None and report.outcome not in ("unknown", "unreachable")


def _after_deadline(back: DeviceStatus, before: HostVersion, batch: int | None, minutes: float) -> DeviceStatus:
    """How a device left by a run stopped at its deadline ended after the rollback run."""
    stopped = f"the run was stopped at its deadline (playbookTimeoutMinutes = {minutes:g} per batch)"
    if back.outcome == "rolled_back":
        return DeviceStatus(
            back.host, "rolled_back", before.version, back.version_after, batch, f"{stopped}; rolled back and verified"
        )
    if back.outcome == "up_to_date":
        return DeviceStatus(
            back.host,
            "failed",
            before.version,
            before.version,
            batch,
            f"{stopped} before the switch; nothing was changed",
        )
    return DeviceStatus(
        back.host,
        "failed",
        before.version,
        None,
        batch,
        f"{stopped}; the rollback FAILED: {back.reason}",
        back.failed_task,
    )


def _with_after(status: DeviceStatus, found: HostVersion | None) -> DeviceStatus:
    if found is None or not found.readable:
        return status
    return DeviceStatus(
        status.host,
        status.outcome,
        status.version_before,
        found.version,
        status.batch,
        status.reason,
        status.failed_task,
    )


def _history_outcome(result: FleetResult) -> str:
    if not result.success:
        return "failed"
    return "dry_run" if result.dry_run else "rolled_back" if result.action == "rollback" else "updated"


def _now() -> str:
    return datetime.now().replace(microsecond=0).isoformat()
