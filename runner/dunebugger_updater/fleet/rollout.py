"""Fleet updates: the same vetted playbooks, over an Ansible inventory, in batches.

Ansible does the orchestration: `serial` makes the batches (the first one is the
canary), `max_fail_percentage` stops the rollout when a batch fails too much (later
batches are never started), `forks` sets the parallelism, and every failed device is
rolled back by its own play (the block/rescue of update_core.yml). This module only
decides what every device gets and reads back what happened:

    resolve the release once (one lookup, one verified download, on the controller)
      -> versions before (fleet_versions.yml over the inventory, read-only)
      -> devices already on (or past) the target are left out
      -> update_core.yml over the rest, with dunebugger_batches / _max_fail_percentage
      -> versions after, only for devices whose outcome leaves them in doubt
      -> FleetResult (the `fleet_result` message and the table)

Device settings (paths, service manager and its commands, health URL, python) come
from the inventory; the controller passes only what is the same for every device:
the release (version, archive, sha256) and the checks its manifest asks for. So
`ansible-playbook -i INVENTORY playbooks/update_core.yml -e ...` by hand does the same.
"""

from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from ..config import ComponentSpec, Settings
from ..device.core_procedure import CoreProcedure, Prepared
from ..device.history import History, HistoryEntry, new_run_id
from ..device.playbooks import PlaybookRun, PlaybookRunner
from ..errors import BadRequest, DownloadError, ManifestError, ReleaseLookupError
from ..release.manifest import DeviceNames, Manifest, fetch_manifest
from ..release.releases import Release, client_for
from ..statedir import StateDir
from ..versions import requested_version, without_v
from .status import (
    DeviceStatus,
    FleetCheck,
    FleetResult,
    HostVersion,
    describe,
    device_statuses,
    host_versions,
    not_run,
)

log = logging.getLogger(__name__)

VERSIONS_PLAYBOOK = "fleet_versions"
DEFAULT_BATCHES: tuple[int | str, ...] = (1, "100%")
DEFAULT_MAX_FAIL_PERCENTAGE = 0
DEFAULT_FORKS = 50
_BATCH = re.compile(r"^(?:[1-9][0-9]{0,5}|(?:[1-9][0-9]?|100)%)$")


@dataclass(frozen=True)
class Rollout:
    """How to roll out: Ansible's `serial` list and `max_fail_percentage`."""

    batches: tuple[int | str, ...] = DEFAULT_BATCHES
    max_fail_percentage: int | None = DEFAULT_MAX_FAIL_PERCENTAGE

    def extra_vars(self) -> dict[str, Any]:
        values: dict[str, Any] = {"dunebugger_batches": list(self.batches)}
        if self.max_fail_percentage is not None:
            values["dunebugger_max_fail_percentage"] = self.max_fail_percentage
        return values


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


@dataclass(frozen=True)
class FleetTarget:
    """Which devices: an inventory file, an optional Ansible `--limit` pattern, forks."""

    inventory: Path
    limit: str | None = None
    forks: int | None = None

    def checked(self) -> FleetTarget:
        if self.inventory.is_dir():
            raise BadRequest(f"inventory {self.inventory} is a directory: name the inventory file (-i FILE)")
        if not self.inventory.is_file():
            raise BadRequest(f"inventory {self.inventory} does not exist")
        if self.forks is not None and not 1 <= self.forks <= 500:
            raise BadRequest(f"--forks: {self.forks} is not between 1 and 500")
        if self.limit is not None and not self.limit.strip():
            raise BadRequest("--limit: empty pattern")
        return FleetTarget(self.inventory.resolve(), self.limit, self.forks)


@dataclass(frozen=True)
class _ResolvedRelease:
    release: Release
    version: str  # tag without "v": what the release's VERSION says
    manifest: Manifest | None
    manifest_note: str


class FleetUpdater:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        runner: PlaybookRunner | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._state = StateDir(settings.state_path)
        self._runner = runner or PlaybookRunner(
            self._state.path / "fleet-runs", timeout_seconds=settings.playbook_timeout_minutes * 60
        )
        self._core = CoreProcedure(settings, transport=transport)
        self._history = History(self._state)

    # --- public --------------------------------------------------------------------

    async def check(self, component: str, target: FleetTarget) -> FleetCheck:
        """Installed versions on every device, and the newest release (one lookup)."""
        spec = self._python_app(component, "checks")
        target = target.checked()
        self._state.ready()  # the runs' artifacts go there
        versions_task = asyncio.create_task(self._versions(spec, target, target.limit))
        latest, error = None, None
        try:
            async with client_for(self._settings, self._transport) as client:
                latest = await client.latest(spec.name, spec.repo, include_prerelease=self._settings.include_prerelease)
        except ReleaseLookupError as exc:
            error = exc.reason
        devices = await versions_task
        return FleetCheck(
            spec.name,
            str(latest.version) if latest else None,
            latest.tag if latest else None,
            tuple(devices.values()),
            error,
        )

    async def update(
        self, component: str, target: FleetTarget, *, version: str | None = None, rollout: Rollout = Rollout()
    ) -> FleetResult:
        """Roll one release out; the run, refused or not, ends up in the controller's history."""
        now = datetime.now().replace(microsecond=0)
        result = await self._update(component, target, version=version, rollout=rollout)
        self._history.append(
            HistoryEntry(
                run_id=result.run_id or new_run_id(now, result.component, "fleet-update"),
                action="fleet_update",
                component=result.component,
                from_version=None,
                to_version=result.version,
                outcome="updated" if result.success else "failed",
                success=result.success,
                message=result.message,
                started_at=now.isoformat(),
                finished_at=datetime.now().replace(microsecond=0).isoformat(),
                details={"devices": {device.host: device.outcome for device in result.devices}, **result.details},
            )
        )
        return result

    async def _update(
        self, component: str, target: FleetTarget, *, version: str | None, rollout: Rollout
    ) -> FleetResult:
        spec = self._python_app(component, "updates")
        target = target.checked()
        self._state.ready()  # the history, the download and the runs' artifacts go there
        version = requested_version(version, "--version") if version is not None else None
        common: dict[str, Any] = {"batches": rollout.batches, "max_fail_percentage": rollout.max_fail_percentage}
        try:
            resolved = await self._resolve(spec, version)
            prepared = await self._core.prepare(
                self._core.artifact(spec, resolved.release, resolved.version, resolved.manifest)
            )
        except (ReleaseLookupError, ManifestError, DownloadError) as exc:
            reason = exc.reason if isinstance(exc, ReleaseLookupError) else str(exc)
            return FleetResult(
                spec.name, False, f"{spec.name} fleet update refused: {reason}. Nothing was changed.", version, **common
            )
        before = await self._versions(spec, target, target.limit)
        statuses = self._not_run(before, resolved.version)
        pending = [host for host in before if host not in statuses]
        run = None
        if pending:
            values = {**self._release_vars(spec, resolved, prepared), **rollout.extra_vars()}
            run = await self._run(self._core.update_playbook, values, target, pending, spec.name, "fleet-update")
            statuses.update(device_statuses(run.events, before, pending, resolved.version))
            statuses.update(await self._settle_unknown(spec, target, statuses))
        devices = tuple(statuses[host] for host in before)
        success = all(device.ok for device in devices)
        return FleetResult(
            spec.name,
            success,
            describe(spec.name, resolved.version, devices),
            resolved.version,
            release=resolved.release.tag,
            devices=devices,
            run_id=run.run_id if run else None,
            details={
                "sha256": prepared.artifact.sha256,
                "sha256_source": prepared.artifact.sha256_source,
                "manifest": resolved.manifest_note,
                "inventory": str(target.inventory),
                "limit": target.limit,
            },
            **common,
        )

    # --- stages --------------------------------------------------------------------

    async def _resolve(self, spec: ComponentSpec, version: str | None) -> _ResolvedRelease:
        async with client_for(self._settings, self._transport) as client:
            release = await client.find(
                spec.name, spec.repo, version, include_prerelease=self._settings.include_prerelease
            )
            # Device paths differ across a fleet: the playbook checks the script path on each device.
            manifest, note = await fetch_manifest(client, spec, release, device=DeviceNames.of(spec))
        return _ResolvedRelease(release, without_v(release.tag), manifest, note)

    def _release_vars(self, spec: ComponentSpec, resolved: _ResolvedRelease, prepared: Prepared) -> dict[str, Any]:
        # Device settings come from the inventory: as extra-vars they would override it.
        return self._core.release_vars(spec, resolved.version, prepared, resolved.manifest)

    async def _versions(self, spec: ComponentSpec, target: FleetTarget, limit: str | None) -> dict[str, HostVersion]:
        run = await self._run(
            VERSIONS_PLAYBOOK,
            {"dunebugger_component": spec.name},
            target,
            None,
            spec.name,
            "fleet-versions",
            limit=limit,
        )
        found = host_versions(run.events)
        if not found:
            raise BadRequest(_no_hosts(run, target, limit))
        return found

    async def _settle_unknown(
        self, spec: ComponentSpec, target: FleetTarget, statuses: dict[str, DeviceStatus]
    ) -> dict[str, DeviceStatus]:
        """A `failed` device either changed nothing or failed its rollback: ask it."""
        unknown = [host for host, status in statuses.items() if status.outcome == "failed"]
        if not unknown:
            return {}
        after = await self._versions(spec, target, ",".join(unknown))
        return {host: _with_after(statuses[host], after.get(host)) for host in unknown}

    async def _run(
        self,
        playbook: str,
        values: dict[str, Any],
        target: FleetTarget,
        hosts: list[str] | None,
        component: str,
        action: str,
        *,
        limit: str | None = None,
    ) -> PlaybookRun:
        if hosts is not None:
            limit = ",".join(hosts)
        forks = target.forks or DEFAULT_FORKS  # Ansible never starts more workers than a batch has hosts
        run_id = new_run_id(datetime.now(), component, action)
        log.info("running %s over %s (limit %s, forks %d) as %s", playbook, target.inventory, limit, forks, run_id)
        return await asyncio.to_thread(
            self._runner.run, playbook, values, run_id=run_id, inventory=target.inventory, limit=limit, forks=forks
        )

    # --- helpers -------------------------------------------------------------------

    @staticmethod
    def _not_run(before: dict[str, HostVersion], version: str) -> dict[str, DeviceStatus]:
        statuses = {}
        for host, found in before.items():
            status = not_run(found, version)
            if status is not None:
                statuses[host] = status
        return statuses

    def _python_app(self, component: str, what: str) -> ComponentSpec:
        """Fleet runs read and install core-style releases (fleet_versions.yml reads the
        VERSION file of a python_app); containers are checked and updated per device."""
        spec = self._settings.component(component)
        if spec.type != "python_app":
            instead = "check" if what == "checks" else f"update {spec.name}"
            raise BadRequest(
                f"{spec.name}: fleet {what} of {spec.type} components are not available yet; "
                f"run `dunebugger-updater {instead}` on each device"
            )
        return spec


def _with_after(status: DeviceStatus, found: HostVersion | None) -> DeviceStatus:
    if found is None or not found.readable:
        return status
    return DeviceStatus(status.host, status.outcome, status.version_before, found.version, status.batch, status.reason)


def _no_hosts(run: PlaybookRun, target: FleetTarget, limit: str | None) -> str:
    where = f"inventory {target.inventory}" + (f" with --limit {limit!r}" if limit else "")
    tail = _stdout_tail(run)
    if run.succeeded or "no hosts" in tail.lower():
        return f"no device in {where}"
    return f"could not read the devices of {where}" + (f": {tail}" if tail else f" (see {run.artifacts})")


def _stdout_tail(run: PlaybookRun) -> str:
    try:
        lines = (run.artifacts / "stdout").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.strip() for line in lines if line.strip().startswith(("ERROR", "[ERROR]", "[WARNING]"))]
    return " ".join(errors[-2:] or [line.strip() for line in lines if line.strip()][-1:])
