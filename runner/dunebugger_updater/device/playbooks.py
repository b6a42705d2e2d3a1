"""Running our own playbooks through ansible-runner.

Only playbooks shipped in this package run (looked up by bare name, never by path).
Each run gets a private data dir under statePath/runs/<run id> holding the extra-vars
file, the runner's artifacts (stdout, every event as JSON, the command and its
environment) for diagnosis; the newest runs are kept, older ones pruned. ansible-runner
is synchronous and starts `ansible-playbook` as a child process: callers run `run()` in
a worker thread.

`ansible-playbook`, and so everything it starts, gets the explicit environment of
`environment.child_environment` plus Ansible's settings: never the updater's own.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..environment import child_environment
from ..errors import PlaybookError
from . import extravars, interruption, processes
from .events import RunnerEvent, parse_event

log = logging.getLogger(__name__)

CONTENT_DIR = Path(__file__).resolve().parents[1]  # the package root: playbooks/, roles/, inventory/
PLAYBOOK_DIR = CONTENT_DIR / "playbooks"
ROLES_DIR = CONTENT_DIR / "roles"
LOCAL_INVENTORY = CONTENT_DIR / "inventory" / "localhost.yml"
RUN_ID = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
TIMED_OUT = "timeout"  # our status for a run stopped at its deadline

# What ansible-runner adds to a child's environment for its callback plugin and artifacts.
RUNNER_VARIABLES = (
    "ANSIBLE_CALLBACK_PLUGINS",
    "ANSIBLE_STDOUT_CALLBACK",
    "ANSIBLE_HOST_KEY_CHECKING",
    "ANSIBLE_CACHE_PLUGIN",
    "ANSIBLE_CACHE_PLUGIN_CONNECTION",
    "AWX_ISOLATED_DATA_DIR",
)

EventHandler = Callable[[RunnerEvent], None]


@dataclass(frozen=True)
class PlaybookRun:
    run_id: str
    playbook: str
    status: str  # successful, failed, timeout, canceled
    rc: int | None
    events: tuple[RunnerEvent, ...]
    artifacts: Path

    @property
    def succeeded(self) -> bool:
        return self.status == "successful"

    @property
    def cut_off(self) -> bool:
        """Stopped before the play could end on its own (deadline, cancel): whatever it
        switched was not rolled back by the play itself."""
        return self.status in (TIMED_OUT, "canceled")


def playbook_path(name: str) -> Path:
    path = PLAYBOOK_DIR / f"{name}.yml"
    if "/" in name or not path.is_file():
        raise PlaybookError(f"no playbook named {name!r} in {PLAYBOOK_DIR}")
    return path


class PlaybookRunner:
    def __init__(
        self,
        runs_dir: Path,
        *,
        keep: int = 20,
        timeout_seconds: float = 1800,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        self._runs_dir = runs_dir
        self._keep = keep
        self._timeout = timeout_seconds
        self._settings = dict(settings or {})  # ANSIBLE_* variables of every run (a fleet's SSH settings)

    def run(
        self,
        name: str,
        values: Mapping[str, Any] | None,
        *,
        run_id: str,
        on_event: EventHandler | None = None,
        inventory: Path | None = None,
        limit: str | None = None,
        forks: int | None = None,
    ) -> PlaybookRun:
        import ansible_runner  # heavy: imported only when a run needs it
        from ansible_runner.utils import signal_handler

        playbook, environment = self.check(name, run_id)
        environment = {**environment, **self._settings}
        data_dir = self._runs_dir / run_id
        if values is not None:
            extravars.write(data_dir / "env" / "extravars", values)
        events: list[RunnerEvent] = []
        deadline = _Deadline(self._timeout, data_dir)
        config = _prepared_config(
            {**environment, **({} if inventory else _private_ansible_dirs(data_dir))},
            private_data_dir=str(data_dir),
            project_dir=str(CONTENT_DIR),
            playbook=str(playbook.relative_to(CONTENT_DIR)),
            inventory=str(inventory or LOCAL_INVENTORY),
            limit=limit,
            forks=forks,
            ident=run_id,
            settings={"pexpect_timeout": 1},  # how often the deadline is looked at
        )
        # SIGINT/SIGTERM cancel the run, as ansible-runner does (it can listen only in the main thread).
        stop_requested = signal_handler() or (lambda: False)
        runner = ansible_runner.Runner(
            config,
            event_handler=_collecting_handler(events, on_event),
            cancel_callback=lambda: deadline.passed() or stop_requested(),
        )
        with interruption.playbook_under_way():
            runner.run()
        artifacts = data_dir / "artifacts" / run_id
        status = str(runner.status)
        if deadline.expired:
            status = TIMED_OUT
            (artifacts / "status").write_text(TIMED_OUT, encoding="utf-8")  # what recovery reads
        self._prune()
        return PlaybookRun(
            run_id=run_id, playbook=name, status=status, rc=runner.rc, events=tuple(events), artifacts=artifacts
        )

    @staticmethod
    def check(name: str, run_id: str) -> tuple[Path, dict[str, str]]:
        """Everything a run needs before it starts (PlaybookError otherwise): the
        playbook, a valid run id, and ansible-playbook with its environment."""
        if not RUN_ID.fullmatch(run_id):
            raise PlaybookError(f"invalid run id {run_id!r}")
        return playbook_path(name), _ansible_environment()

    def run_detached(
        self, name: str, values: Mapping[str, Any], *, run_id: str, on_event: EventHandler | None = None
    ) -> PlaybookRun:
        """Run in a process of its own session, which outlives this one: an update that
        replaces the container or service hosting the caller still finishes, and its
        artifacts tell the next start of the updater how it ended. While we live, we
        wait for it and relay its events."""
        self.check(name, run_id)
        data_dir = self._runs_dir / run_id
        extravars.write(data_dir / "env" / "extravars", values)
        with (data_dir / "detached.log").open("ab") as log_file:
            child = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "dunebugger_updater.device.detached",
                    str(self._runs_dir),
                    name,
                    run_id,
                    str(self._timeout),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
                env=child_environment(),
            )
        (data_dir / "detached.pid").write_text(f"{child.pid}\n")
        seen: set[str] = set()
        while child.poll() is None:
            self._relay_new_events(data_dir / "artifacts" / run_id / "job_events", seen, on_event)
            time.sleep(0.2)
        self._relay_new_events(data_dir / "artifacts" / run_id / "job_events", seen, on_event)
        return self.load(name, run_id) or PlaybookRun(run_id, name, "failed", child.returncode, (), data_dir)

    def wait_for_detached(self, run_id: str, timeout: float = 3600) -> None:
        """A detached run may still be going (we are the restarted caller): let it finish."""
        try:
            pid = int((self._runs_dir / run_id / "detached.pid").read_text().strip())
        except (OSError, ValueError):
            return
        deadline = time.monotonic() + timeout
        while processes.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)

    def wait_for_orphans(self, run_id: str) -> list[int]:
        """A run whose caller is gone (killed, its terminal closed) may still act on the
        device: wait for its processes to end, at most until the run's deadline, then end
        them with what they started. The pids found running at first."""
        # In the argv of ansible-playbook, its workers and the modules they run (their
        # files are in the run's private ANSIBLE_REMOTE_TMP); not in a service's started.
        marker = str(self._runs_dir / run_id)
        orphans = processes.running_with(marker)
        if not orphans:
            return []
        try:
            started = (self._runs_dir / run_id / "env" / "extravars").stat().st_mtime
        except OSError:
            started = time.time()
        log.warning(
            "run %s lost its caller and still runs (pids %s); waiting for it to end, at most %.0f s",
            run_id,
            " ".join(map(str, orphans)),
            max(0.0, started + self._timeout - time.time()),
        )
        while processes.running_with(marker) and time.time() < started + self._timeout:
            time.sleep(0.5)
        for pid in processes.running_with(marker):
            processes.end_tree(pid)
        return orphans

    def load(self, name: str, run_id: str) -> PlaybookRun | None:
        """A finished run read back from its artifacts; None while it has neither a
        status nor the play's final stats (it runs, or was cut off)."""
        artifacts = self._runs_dir / run_id / "artifacts" / run_id
        events = [parse_event(raw) for raw in _event_documents(artifacts / "job_events")]
        try:
            status = (artifacts / "status").read_text(encoding="utf-8").strip()
        except OSError:
            # Its caller died before writing the status, but the play may have ended on
            # its own (its last event is the stats): read the play's end from them.
            stats = next((event.stats for event in events if event.kind == "playbook_on_stats"), None)
            if stats is None:
                return None
            status = "failed" if stats.get("failures") or stats.get("dark") else "successful"
        rc_text = _read_text(artifacts / "rc")
        return PlaybookRun(
            run_id,
            name,
            status,
            int(rc_text) if rc_text.lstrip("-").isdigit() else None,
            tuple(sorted(events, key=lambda event: event.counter)),
            artifacts,
        )

    @staticmethod
    def _relay_new_events(directory: Path, seen: set[str], on_event: EventHandler | None) -> None:
        if on_event is None or not directory.is_dir():
            return
        fresh = sorted(
            (p for p in directory.glob("*.json") if p.name not in seen),
            key=lambda p: int(p.name.split("-", 1)[0]) if p.name.split("-", 1)[0].isdigit() else 0,
        )
        for path in fresh:
            try:
                raw = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # still being written: next round
            seen.add(path.name)
            on_event(parse_event(raw))

    def _prune(self) -> None:
        runs = sorted((p for p in self._runs_dir.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in runs[: max(0, len(runs) - self._keep)]:
            shutil.rmtree(old, ignore_errors=True)


class _Deadline:
    """ansible-runner's cancel callback: at the deadline, end every process of the run
    (ansible-runner alone would leave Ansible's worker and its module running)."""

    def __init__(self, seconds: float, data_dir: Path) -> None:
        self._at = time.monotonic() + seconds
        self._marker = str(data_dir)  # in ansible-playbook's argv (-e @DATA_DIR/env/extravars)
        self.expired = False

    def passed(self) -> bool:
        if time.monotonic() < self._at:
            return False
        if not self.expired:
            self.expired = True
            log.error("playbook run in %s reached its deadline; stopping it", self._marker)
            for pid in processes.children_running(os.getpid(), self._marker):
                processes.end_tree(pid)
        return True


def _prepared_config(environment: dict[str, str], **options: Any) -> Any:
    """ansible-runner's config of one run, whose child gets `environment` and the
    runner's own variables only (prepare() starts from a copy of os.environ)."""
    import ansible_runner

    config = ansible_runner.RunnerConfig(envvars=environment, quiet=True, suppress_env_files=True, **options)
    config.prepare()
    config.env = {key: value for key, value in config.env.items() if key in environment or key in RUNNER_VARIABLES}
    return config


def _collecting_handler(events: list[RunnerEvent], on_event: EventHandler | None) -> Callable[[dict[str, Any]], bool]:
    """ansible-runner's event handler: parse once, keep, and tell the listener."""

    def handle(raw: dict[str, Any]) -> bool:
        event = parse_event(raw)
        events.append(event)
        if on_event:
            try:
                on_event(event)
            except Exception:  # a broken listener must not break the update
                log.exception("progress listener failed")
        return True

    return handle


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def _event_documents(directory: Path) -> list[dict[str, Any]]:
    documents = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        try:
            documents.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return documents


def _private_ansible_dirs(data_dir: Path) -> dict[str, str]:
    """For runs on this device: Ansible's own files (~/.ansible, its "remote" temp
    directory included) in the run's private directory, so that a user whose home is
    missing or read-only (a service user, nobody) can run playbooks too. (Fleet runs
    keep the operator's: SSH control sockets need a short path.)"""
    home = data_dir / "ansible"
    return {"ANSIBLE_HOME": str(home), "ANSIBLE_REMOTE_TMP": str(home / "tmp")}


def _ansible_environment() -> dict[str, str]:
    environment = child_environment()
    if not shutil.which("ansible-playbook", path=environment["PATH"]):
        raise PlaybookError("ansible-playbook is not installed (pip install ansible-core)")
    return {
        **environment,
        "ANSIBLE_ROLES_PATH": str(ROLES_DIR),
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_NOCOLOR": "true",
    }
