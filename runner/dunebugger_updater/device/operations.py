"""Updates, rollbacks and crash recovery on this device, as explicit stages:

    settle a cut-off run -> plan (release, version rules, manifest) -> prepare (download,
    verify) -> [dry run stops here] -> lock -> stage -> journal -> playbook -> result
    -> history -> journal cleared -> unlock

The release comes from GitHub's API, or from files on this device that the operator
names (`LocalSource`: a release or image archive, a bundle); everything after the
lookup is the same for both.

Waiting on the network never holds the device lock: an operator's rollback or recovery
is not answered "busy" because a download trickles. Anything that fails before the
playbook starts has changed nothing on the device. The playbook rolls back what it
switched (block/rescue); a run stopped at its deadline, or cut off by a crash, is rolled
back by the vetted rollback playbook, and the journal stays until the device runs a
verified release again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from ..config import ComponentSpec, Settings
from ..errors import Busy, DownloadError, ManifestError, PreflightError, ReleaseLookupError
from ..release.checker import Clock, local_now
from ..release.local import LocalReleases, LocalSource
from ..release.manifest import DeviceNames
from ..release.releases import ReleaseSource, client_for
from ..results import Outcome, UpdateResult
from ..statedir import StateDir
from ..versions import parse_or_none, parse_version, requested_version
from . import interruption
from .container_procedure import ContainerProcedure
from .core_procedure import CoreProcedure
from .events import Progress, RunnerEvent, host_reports, last_failure, progress
from .history import History, HistoryEntry, new_run_id
from .installed import InstalledVersion, installed_version
from .journal import Journal, JournalEntry
from .lock import DeviceLock
from .plan import Plan, PreparedUpdate, Procedure, resolve_plan
from .playbooks import PlaybookRun, PlaybookRunner

log = logging.getLogger(__name__)

ProgressListener = Callable[[str, str, str, Progress], None]  # component, run id, action, progress


class DeviceOperations:
    def __init__(
        self,
        settings: Settings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = local_now,
        on_progress: ProgressListener | None = None,
    ) -> None:
        self._settings = settings
        self._transport = transport
        self._clock = clock
        self._on_progress = on_progress
        state = StateDir(settings.state_path)  # created and checked when the lock is first taken
        self._lock = DeviceLock(state)
        self._journal = Journal(state)
        self.history = History(state)
        self._runner = PlaybookRunner(state.path / "runs", timeout_seconds=settings.playbook_timeout_minutes * 60)
        self._procedures: dict[str, Procedure] = {
            "python_app": CoreProcedure(settings, transport=transport),
            "container": ContainerProcedure(settings),
        }

    # --- public operations -----------------------------------------------------------

    async def update(
        self, name: str, *, dry_run: bool = False, version: str | None = None, source: LocalSource | None = None
    ) -> UpdateResult:
        """Update `name` to the newest release, or `version`; from GitHub, or from the
        files at `source`."""
        spec = self._settings.component(name)
        if version is not None:
            version = requested_version(version, "--version")
        started = self._stamp()
        with self._locked(f"update of {name}"):  # busy at once, and a cut-off run settled first
            await self._recover_locked()
        try:
            return await self._update(spec, version, dry_run, started, source)
        except Exception as exc:
            if isinstance(exc, Busy):
                raise
            log.exception("update of %s failed unexpectedly", name)
            # The type only: this message reaches history, frontends and notifications, and
            # an exception's text may quote anything (a header, a URL with its password).
            text = (
                f"{spec.name} update failed: internal error ({type(exc).__name__}); the updater's log has the details"
            )
            result = UpdateResult(spec.name, False, text, Outcome.FAILED, dry_run=dry_run)
            # A journal left by a run it interrupted stays: the next start settles it.
            return self._record("update", spec, started, result)

    async def rollback(self, name: str, *, to: str | None = None) -> UpdateResult:
        spec = self._settings.component(name)
        if to is not None:
            to = requested_version(to, "--to")
        started = self._stamp()
        if to and (unknown := await asyncio.to_thread(self._procedure(spec).unknown_rollback_target, spec, to)):
            return await self._refuse_rollback(spec, started, unknown)  # before the lock: nothing to wait for
        with self._locked(f"rollback of {name}"):
            await self._recover_locked()
            missing = None if to else self._procedure(spec).missing_rollback_target(spec)
            if missing:
                return await self._refuse_rollback(spec, started, missing)
            before = (await self._installed(spec)).version
            values = self._procedure(spec).rollback_vars(spec, to)
            run = await self._run_playbook("rollback", spec, before, to or "previous", values, started)
            after = (await self._installed(spec)).version
            result = self._rollback_result(spec, before, after, run)
            return self._finish("rollback", spec, started, result, run)

    async def recover(self) -> UpdateResult | None:
        """Settle a run that was cut off; None when there was nothing to settle."""
        with self._locked("recovery"):
            return await self._recover_locked()

    # --- stages ----------------------------------------------------------------------

    async def _update(
        self, spec: ComponentSpec, version: str | None, dry_run: bool, started: str, source: LocalSource | None
    ) -> UpdateResult:
        current = (await self._installed(spec)).version
        try:
            plan = await self._plan(spec, current, version, source)
        except (ReleaseLookupError, PreflightError, ManifestError) as exc:
            return self._refused(spec, started, exc.reason, dry_run, current)
        if plan is None:
            result = UpdateResult(
                spec.name,
                True,
                f"{spec.name} is already at the newest version ({current})",
                Outcome.UP_TO_DATE,
                dry_run=dry_run,
                from_version=current,
                to_version=current,
            )
            return self._record("update", spec, started, result)
        try:
            prepared = await self._procedure(spec).prepare_update(plan)
        except (DownloadError, ManifestError) as exc:
            return self._refused(spec, started, exc.reason, dry_run, plan.from_version, plan)
        if dry_run:
            return self._record("dry_run", spec, started, self._dry_run_result(plan, prepared))
        with self._locked(f"update of {spec.name}"):
            await self._recover_locked()
            now = (await self._installed(spec)).version
            if now != plan.from_version:
                reason = (
                    f"{spec.name} changed from {plan.from_version or 'nothing'} to {now or 'nothing'} "
                    "while the release was prepared; ask again"
                )
                return self._refused(spec, started, reason, dry_run, now, plan)
            try:
                if prepared.stage:
                    await prepared.stage()
            except DownloadError as exc:
                return self._refused(spec, started, exc.reason, dry_run, plan.from_version, plan)
            run = await self._run_playbook(
                "update", spec, plan.from_version, plan.version_text, prepared.extra_vars, started
            )
            if run.cut_off:
                return await self._roll_back_cut_off(spec, plan, run, started)
            return self._finish(
                "update",
                spec,
                started,
                self._update_result(spec, plan.from_version, plan.version_text, run, plan.manifest_note),
                run,
            )

    def _refused(
        self,
        spec: ComponentSpec,
        started: str,
        reason: str,
        dry_run: bool,
        running: str | None,
        plan: Plan | None = None,
    ) -> UpdateResult:
        """Record an update not started: it says what the device runs and, once planned,
        what it would have installed."""
        planned = dict(to_version=plan.version_text, manifest=plan.manifest_note) if plan else {}
        result = UpdateResult.refused(spec.name, "update", reason, dry_run=dry_run, from_version=running, **planned)
        return self._record("update", spec, started, result)

    async def _plan(
        self, spec: ComponentSpec, installed: str | None, version: str | None, source: LocalSource | None
    ) -> Plan | None:
        """What to install over the `installed` version, or None when the device already
        runs that release."""
        current = parse_or_none(installed)
        if installed is not None and current is None:
            raise PreflightError(
                f"the running version {installed!r} is not a version; use rollback or reinstall by hand"
            )
        async with self._releases(spec, source) as releases:
            release = await releases.find(
                spec.name, spec.repo, version, include_prerelease=self._settings.include_prerelease
            )
            if current is not None and release.version == current:
                return None
            if current is not None and release.version < current:
                raise PreflightError(
                    f"{release.version_text} is older than the running {installed}; "
                    "update never goes back (use rollback)"
                )
            plan = await resolve_plan(
                releases,
                self._settings,
                self._procedure(spec),
                release,
                spec,
                from_version=installed,
                device=DeviceNames.of(spec, self._settings.backup_path),
            )
        if plan.manifest and plan.manifest.min_remote_version:
            plan = await self._checked_remote_version(plan, plan.manifest.min_remote_version)
        return plan

    def _releases(self, spec: ComponentSpec, source: LocalSource | None) -> ReleaseSource:
        """GitHub's API, or the files the operator named."""
        if source is None:
            return client_for(self._settings, self._transport)
        return LocalReleases(source, self._settings, spec)

    async def _checked_remote_version(self, plan: Plan, needs: str) -> Plan:
        """The manifest's min_remote_version against the remote this device runs: an older
        one refuses the update. Where it holds nothing back (remote's own update, no
        remote, a remote whose version is unknown), the result's manifest note says so."""
        unchecked = f"min_remote_version {needs} not checked"
        remote = self._settings.components.get("remote")
        if plan.spec.name == "remote":
            return _noted(plan, f"{unchecked}: it holds back the others' updates, not remote's")
        if remote is None:
            return _noted(plan, f"{unchecked}: no remote component is configured")
        installed = await self._installed(remote)
        running = parse_or_none(installed.version)
        if installed.version is None:
            return _noted(plan, f"{unchecked}: the version of remote is unknown ({installed.detail})")
        if running is None:
            return _noted(plan, f"{unchecked}: remote runs {installed.version!r}, not a version")
        if running < parse_version(needs):
            raise PreflightError(
                f"this release needs remote {needs} or newer (running {installed.version}): update remote first"
            )
        return plan

    async def _run_playbook(
        self,
        action: str,
        spec: ComponentSpec,
        from_version: str | None,
        to_version: str,
        values: dict[str, Any],
        started: str,
    ) -> PlaybookRun:
        procedure = self._procedure(spec)
        name = procedure.update_playbook if action == "update" else procedure.rollback_playbook
        steps = procedure.update_steps if action == "update" else procedure.rollback_steps
        run_id = new_run_id(self._clock(), spec.name, action)
        if action == "update" and interruption.stop_requested() is not None:
            raise KeyboardInterrupt  # asked to stop while an earlier run (a recovery) ended: start nothing new
        # A run that cannot start must not leave a journal that every later start would trip on.
        self._runner.check(name, run_id)
        self._journal.begin(JournalEntry(run_id, action, spec.name, from_version, to_version, started))
        loop = asyncio.get_running_loop()
        last: list[Progress] = []

        def on_event(event: RunnerEvent) -> None:
            step = progress(event, steps, last[-1] if last else None)
            if step and self._on_progress:
                last.append(step)
                loop.call_soon_threadsafe(self._on_progress, spec.name, run_id, action, step)

        run = self._runner.run_detached if spec.self_hosted else self._runner.run
        return await asyncio.to_thread(run, name, values, run_id=run_id, on_event=on_event)

    async def _recover_locked(self) -> UpdateResult | None:
        entry = self._journal.pending()
        if entry is None:
            return None
        spec = self._settings.components.get(entry.component)
        if spec is None:
            log.error("journal names unknown component %r; dropping it", entry.component)
            self._journal.finish()
            return None
        log.warning("settling run %s (%s of %s) that was cut off", entry.run_id, entry.action, entry.component)
        started = self._stamp()
        await asyncio.to_thread(self._runner.wait_for_detached, entry.run_id)
        await asyncio.to_thread(self._runner.wait_for_orphans, entry.run_id)
        procedure = self._procedure(spec)
        finished = self._runner.load(
            procedure.update_playbook if entry.action == "update" else procedure.rollback_playbook, entry.run_id
        )
        if finished is not None and _settles_device(finished):
            return await self._settle_finished(entry, spec, finished, started)
        return await self._roll_back_interrupted(entry, spec, started)

    async def _settle_finished(
        self, entry: JournalEntry, spec: ComponentSpec, finished: PlaybookRun, started: str
    ) -> UpdateResult:
        """The run ended on its own (a detached run that outlived its caller, or a crash
        after the playbook but before the history): its own result stands."""
        if entry.action == "update":
            result = self._update_result(spec, entry.from_version, entry.to_version, finished)
        else:
            result = self._rollback_result(spec, entry.from_version, (await self._installed(spec)).version, finished)
        return self._finish("recovery", spec, started, result, finished)

    async def _roll_back_interrupted(self, entry: JournalEntry, spec: ComponentSpec, started: str) -> UpdateResult:
        """The run was cut off: put the device back on the version it ran before."""
        run, after = await self._restore(spec, entry, started)
        if run.succeeded:
            result = UpdateResult(
                spec.name,
                True,
                f"Recovered {spec.name}: the {entry.action} to {entry.to_version} was "
                f"interrupted; {spec.name} runs {after}",
                Outcome.RECOVERED,
                from_version=entry.from_version,
                to_version=after,
                run_id=run.run_id,
            )
        else:
            result = UpdateResult(
                spec.name,
                False,
                f"Recovery of {spec.name} failed: {_failure_text(run)}",
                Outcome.FAILED,
                from_version=entry.from_version,
                to_version=after,
                run_id=run.run_id,
            )
        return self._finish("recovery", spec, started, result, run)

    async def _roll_back_cut_off(self, spec: ComponentSpec, plan: Plan, cut: PlaybookRun, started: str) -> UpdateResult:
        """The update was stopped at its deadline, maybe between switch and verification:
        the vetted rollback playbook puts the previous release back and verifies it."""
        where = _last_task(cut)
        deadline = f"its deadline (playbookTimeoutMinutes = {self._settings.playbook_timeout_minutes:g})"
        entry = JournalEntry(cut.run_id, "update", spec.name, plan.from_version, plan.version_text, started)
        run, after = await self._restore(spec, entry, started)
        common: dict[str, Any] = dict(
            from_version=plan.from_version, to_version=plan.version_text, run_id=cut.run_id, manifest=plan.manifest_note
        )
        stopped = f"{spec.name} update to {plan.version_text} was stopped at {deadline}{where}"
        if run.succeeded:
            text = f"{stopped}. Rolled back: {spec.name} runs {after} again and passes its checks."
            result = UpdateResult(spec.name, False, text, Outcome.ROLLED_BACK, **common)
        else:
            text = (
                f"{stopped}. The rollback to {plan.from_version or 'the previous release'} FAILED: "
                f"{_failure_text(run)}. `dunebugger-updater recover` tries again."
            )
            result = UpdateResult(spec.name, False, text, Outcome.FAILED, **common)
        return self._finish("update", spec, started, result, run)

    async def _restore(self, spec: ComponentSpec, entry: JournalEntry, started: str) -> tuple[PlaybookRun, str | None]:
        """Run the rollback playbook back to the version the journal's run started from;
        returns that run and what is installed afterwards."""
        target = entry.from_version if entry.action == "update" else entry.to_version
        if target == "previous":
            target = None
        values = self._procedure(spec).rollback_vars(spec, target or None)
        run = await self._run_playbook("rollback", spec, None, target or "previous", values, started)
        return run, (await self._installed(spec)).version

    # --- results ---------------------------------------------------------------------

    def _update_result(
        self, spec: ComponentSpec, from_version: str | None, to_version: str, run: PlaybookRun, manifest_note: str = ""
    ) -> UpdateResult:
        """What an update run did, from its events (also for a run found finished in the journal)."""
        report = next(iter(host_reports(run.events).values()), None)
        common: dict[str, Any] = dict(
            from_version=from_version, to_version=to_version, run_id=run.run_id, manifest=manifest_note
        )
        if run.succeeded:
            return UpdateResult(spec.name, True, f"Updated {spec.name} to {to_version}", Outcome.UPDATED, **common)
        told = report.outcome if report else None
        outcome = Outcome(told) if told in (Outcome.ROLLED_BACK, Outcome.REFUSED, Outcome.FAILED) else Outcome.FAILED
        return UpdateResult(spec.name, False, _failure_text(run), outcome, **common)

    def _rollback_result(
        self, spec: ComponentSpec, before: str | None, after: str | None, run: PlaybookRun
    ) -> UpdateResult:
        common: dict[str, Any] = dict(from_version=before, to_version=after, run_id=run.run_id)
        if run.succeeded:
            text = (
                f"Rolled back {spec.name} to {after}"
                if before != after
                else f"{spec.name} already runs {after}; nothing to do"
            )
            return UpdateResult(
                spec.name, True, text, Outcome.ROLLED_BACK if before != after else Outcome.UP_TO_DATE, **common
            )
        return UpdateResult(spec.name, False, _failure_text(run), Outcome.FAILED, **common)

    def _dry_run_result(self, plan: Plan, prepared: PreparedUpdate) -> UpdateResult:
        details = {"release": plan.release.tag, **prepared.details, "checks": _checks_of(prepared.extra_vars)}
        text = (
            f"Dry run: would update {plan.spec.name} from {plan.from_version or 'nothing'} to {plan.version_text}; "
            f"{prepared.summary}; nothing was changed"
        )
        return UpdateResult(
            plan.spec.name,
            True,
            text,
            Outcome.DRY_RUN,
            dry_run=True,
            from_version=plan.from_version,
            to_version=plan.version_text,
            manifest=plan.manifest_note,
            details=details,
        )

    async def _refuse_rollback(self, spec: ComponentSpec, started: str, reason: str) -> UpdateResult:
        before = (await self._installed(spec)).version
        return self._record(
            "rollback", spec, started, UpdateResult.refused(spec.name, "rollback", reason, from_version=before)
        )

    def _record(
        self, action: str, spec: ComponentSpec, started: str, result: UpdateResult, run: PlaybookRun | None = None
    ) -> UpdateResult:
        action = "dry_run" if result.dry_run else action  # a refused dry run is still a dry run
        # Refusals get a run id too: the result and its history line share it.
        run_id = result.run_id or (run.run_id if run else new_run_id(self._clock(), spec.name, action))
        result = dataclasses.replace(result, run_id=run_id)
        self.history.append(HistoryEntry.of(action, result, started, self._stamp(), run_id))
        return result

    def _finish(
        self, action: str, spec: ComponentSpec, started: str, result: UpdateResult, run: PlaybookRun
    ) -> UpdateResult:
        """Record the run's result; then, if the device runs a verified release again,
        clear the journal. Until then every start of the updater retries the rollback."""
        self._record(action, spec, started, result, run)
        # Only now is the run's outcome safe on disk; a crash before this line is
        # settled by recovery, which reads the journal.
        if _settles_device(run):
            self._journal.finish()
        return result

    # --- small helpers ---------------------------------------------------------------

    async def _installed(self, spec: ComponentSpec) -> InstalledVersion:
        # May ask the container engine (a subprocess): never on the event loop.
        return await asyncio.to_thread(installed_version, self._settings, spec)

    def _locked(self, what: str) -> DeviceLock:
        self._lock.acquire(what)
        return self._lock

    def _stamp(self) -> str:
        return self._clock().isoformat()

    def _procedure(self, spec: ComponentSpec) -> Procedure:
        return self._procedures[spec.type]


def _noted(plan: Plan, note: str) -> Plan:
    """`plan` with `note` added to what the result says about its manifest."""
    return dataclasses.replace(plan, manifest_note=f"{plan.manifest_note}; {note}")


# extra-var -> its name in a dry run's report of the checks a run would make
PLANNED_CHECKS = {
    "core_min_free_mb": "min_free_mb",
    "container_min_free_mb": "min_free_mb",
    "core_check_service_running_before": "service_running_before",
    "container_check_service_running_before": "service_running_before",
    "core_backup_max_age_hours": "backup_max_age_hours",
    "container_backup_max_age_hours": "backup_max_age_hours",
    "container_expected_name": "container_name",
    "core_migration_script": "migration_script",
    "core_migration_required": "migration_required",
    "core_health_url": "health_url",
    "container_health_url": "health_url",
    "core_health_timeout_seconds": "health_timeout_seconds",
    "container_health_timeout_seconds": "health_timeout_seconds",
    "core_health_expected_status": "health_expected_status",
    "container_health_expected_status": "health_expected_status",
    "core_service_active_timeout_seconds": "service_active_timeout_seconds",
}


def _checks_of(values: dict[str, Any]) -> dict[str, Any]:
    """The pre- and post-checks a run would make (what a dry run reports): the device's,
    with what the release's manifest asks for."""
    checks = {
        label: str(values[name]) if isinstance(values[name], Path) else values[name]
        for name, label in PLANNED_CHECKS.items()
        if name in values
    }
    return {**checks, **values.get("dunebugger_release_checks", {})}


def _failure_text(run: PlaybookRun) -> str:
    failure = last_failure(run.events)
    if failure and failure.message:
        return " ".join(failure.message.split())
    return f"the {run.playbook} playbook ended {run.status} (rc {run.rc}); see {run.artifacts}"


def _settles_device(run: PlaybookRun) -> bool:
    """Whether the device runs a verified release after `run`: it succeeded, or the play
    itself rolled back, refused, or failed before it switched anything."""
    if run.succeeded:
        return True
    if run.cut_off:
        return False
    report = next(iter(host_reports(run.events).values()), None)
    if report is None:
        return False
    if report.outcome in (Outcome.ROLLED_BACK, Outcome.REFUSED):
        return True
    return report.outcome == Outcome.FAILED and not report.switched


def _last_task(run: PlaybookRun) -> str:
    task = next((event.task for event in reversed(run.events) if event.is_task_start and event.task), None)
    return f" during '{task}'" if task else ""
