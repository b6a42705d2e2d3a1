"""How the installed command behaves at the edges a person meets: a mistake on the
command line is one line saying where the help is (exit 2); Ctrl-C before a playbook
runs is one line and exit 130; Ctrl-C, SIGTERM or a closed terminal while a playbook
changes the device waits for the run and reports it, and a run whose command was killed
is waited for by the next one; `rollback --to`
a version the device does not keep is refused before the lock, naming the versions it
keeps; `manifest generate` writes what `manifest validate` accepts with the same
configuration, without touching the device."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.device import processes
from dunebugger_updater.device.lock import DeviceLock
from dunebugger_updater.statedir import StateDir
from support.device import running_sandbox

pytestmark = pytest.mark.usefixtures("clean_env")

CONSOLE_SCRIPT = Path(sys.executable).parent / "dunebugger-updater"


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")})


@pytest.fixture(scope="module")
def device(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDevice]:
    with running_sandbox(tmp_path_factory.mktemp("cli") / "device") as sandbox:
        yield sandbox


# --- mistakes on the command line ---------------------------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["updte", "core"], "dunebugger-updater: argument VERB: invalid choice: 'updte' (choose from 'check', "),
    ([], "dunebugger-updater: the following arguments are required: VERB"),
    (["update"], "dunebugger-updater update: the following arguments are required: component"),
    (["check", "--bogus"], "dunebugger-updater: unrecognized arguments: --bogus"),
    (["history", "--limit", "0"], "dunebugger-updater history: argument --limit: '0' is not a whole number of 1 or more"),
    (["serve", "--port", "99999"], "dunebugger-updater serve: argument --port: '99999' is not a TCP port (1-65535)"),
    (["fleet", "update", "core"], "dunebugger-updater fleet update: the following arguments are required: -i/--inventory"),
    (["manifest", "validate"], "dunebugger-updater manifest validate: the following arguments are required: FILE"),
    (["bundle", "create", "-o", "x"], "dunebugger-updater bundle create: the following arguments are required: "),
])
def test_a_command_line_mistake_is_one_line_with_where_the_help_is(argv, says):
    done = run(*argv)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    verb = says.split(":", 1)[0]
    assert line.startswith(says) and line.endswith(f"(see `{verb} --help`)"), line
    assert done.stdout == ""


# --- Ctrl-C ----------------------------------------------------------------------------------


def interrupt(argv: list[str], when: callable, device: DemoDevice, number: int = signal.SIGINT,
              group: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
    """Start the command in a session of its own, wait until `when(pid)()` is true, then
    send `number`: by default what a terminal does on Ctrl-C, SIGINT to the whole
    process group. How long it took to end after that."""
    child = subprocess.Popen([str(CONSOLE_SCRIPT), "--config", str(device.config), *argv], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")})
    ready = when(lambda: child.pid)
    deadline = time.monotonic() + 120
    while not ready() and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "it ended before it could be interrupted"
    sent = time.monotonic()
    (os.killpg if group else os.kill)(child.pid, number)
    out, err = child.communicate(timeout=180)
    return subprocess.CompletedProcess(child.args, child.returncode, out, err), time.monotonic() - sent


def after(seconds: float) -> callable:
    start = time.monotonic()
    return lambda: time.monotonic() - start >= seconds


def assert_one_line_and_130(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
    assert (done.returncode, done.stderr) == (130, "dunebugger-updater: interrupted\n"), done.stderr[-3000:]


def importing(child_pid: callable) -> callable:
    """True once the command loads its modules (httpx brings in _ssl): Ctrl-C in the
    middle of an import, where the interpreter itself would print a traceback."""
    def ready() -> bool:
        try:
            return "_ssl." in Path(f"/proc/{child_pid()}/maps").read_text()
        except OSError:
            return False
    return ready


@pytest.mark.parametrize("moment", ["while importing", "while waiting for the network"])
def test_ctrl_c_during_a_check_is_one_line(device, moment):
    device.github.reset()
    device.publish("1.1.0")
    device.github.trickle("/repos/marco-svitol/dunebugger/releases/latest", 0.2)
    done, took = interrupt(["check", "--force"], importing if moment == "while importing" else lambda pid: after(1.5),
                           device)
    assert_one_line_and_130(done)
    assert took < 10


# A migration that runs a while after the switch, and says when it started and ended.
SLOW_MIGRATION = (b'#!/bin/sh\necho $$ > "$DUNEBUGGER_RELEASE_DIR/migrate.pid"\nsleep 4\n'
                  b'date +%s.%N > "$DUNEBUGGER_RELEASE_DIR/migrated"\n')


def migrating(device: DemoDevice, version: str) -> callable:
    return lambda pid: (device.home / "releases" / "core" / version / "migrate.pid").exists


@pytest.mark.parametrize(("number", "group"), [(signal.SIGINT, True), (signal.SIGTERM, False),
                                              (signal.SIGHUP, False)], ids=["ctrl-c", "sigterm", "sighup"])
def test_a_stop_while_the_playbook_changes_the_device_waits_for_the_run_and_reports_it(tmp_path, number, group):
    """Stopped between the switch and the verification, the command does not abandon the
    run (its playbook would go on without the lock): the run ends on its own, its result
    is shown and recorded as the update's, and the command exits with 128 + the signal."""
    with running_sandbox(tmp_path / "device") as device:
        archive = releases.build_release(device.artifacts, "1.1.0",
                                         extra_members={"scripts/migrate.sh": (SLOW_MIGRATION, 0o755)})
        device.publish_archive("1.1.0", archive)
        done, _ = interrupt(["update", "core"], migrating(device, "1.1.0"), device, number, group)

        name = signal.Signals(number).name
        assert "Traceback" not in done.stdout + done.stderr, done.stderr[-3000:]
        assert done.returncode == 128 + number, done.stderr[-3000:]
        assert f"dunebugger-updater: {name}: the playbook run under way ends first" in done.stderr
        assert "Updated core to 1.1.0" in done.stdout, done.stdout
        assert (device.home / "releases" / "core" / "1.1.0" / "migrated").exists(), "the migration ran to its end"
        assert device.health()["version"] == "1.1.0"
        settled = run("--config", str(device.config), "recover", "--json")
        assert json.loads(settled.stdout)["body"]["message"] == "nothing to recover: no update was cut off"
        history = json.loads(run("--config", str(device.config), "history", "--json").stdout)["body"]["entries"]
        assert [(e["action"], e["outcome"], e["to_version"]) for e in history][-1] == ("update", "updated", "1.1.0")


def test_ctrl_c_before_the_playbook_stops_at_once_and_changes_nothing(device):
    device.github.reset()
    device.publish("1.1.0")
    device.github.trickle("/repos/marco-svitol/dunebugger/releases/latest", 0.2)
    before = device.fingerprint()
    done, took = interrupt(["update", "core"], lambda pid: after(1.5), device)
    assert_one_line_and_130(done)
    assert took < 10
    assert device.fingerprint() == before
    assert not (device.state / "journal.json").exists()


def test_the_next_update_waits_for_a_run_whose_command_was_killed(tmp_path):
    """kill -9 of the command while its playbook migrates after the switch: the playbook
    runs on without its caller, and the lock died with the caller. The next update waits
    for that run to end before it settles the device and installs anything: the two never
    act on the device at once."""
    with running_sandbox(tmp_path / "device") as device:
        archive = releases.build_release(device.artifacts, "1.1.0",
                                         extra_members={"scripts/migrate.sh": (SLOW_MIGRATION, 0o755)})
        device.publish_archive("1.1.0", archive)
        killed, _ = interrupt(["update", "core"], migrating(device, "1.1.0"), device, signal.SIGKILL, group=False)
        assert killed.returncode == -signal.SIGKILL
        device.publish("1.2.0")

        second = run("--config", str(device.config), "update", "core", "--json")

        assert "lost its caller and still runs" in second.stderr, second.stderr
        migrated = device.home / "releases" / "core" / "1.1.0" / "migrated"
        assert migrated.exists(), "the cut-off run's migration was let finish"
        assert float(migrated.read_text()) < (device.home / "releases" / "core" / "1.2.0").stat().st_ctime, \
            "nothing of 1.2.0 was written before the first run ended"
        assert json.loads(second.stdout)["body"]["outcome"] == "updated", second.stdout
        assert device.health()["version"] == "1.2.0"
        assert processes.running_with(str(device.state / "runs")) == [], "no process of either run is left"


# --- rollback --to a version the device does not keep -------------------------------------


def test_rollback_to_an_unknown_version_is_refused_before_the_lock(device):
    runs = device.state / "runs"
    runs_before = set(runs.iterdir()) if runs.is_dir() else set()
    kept = run("--config", str(device.config), "versions", "--json")
    running = json.loads(kept.stdout)["body"]["components"]["core"]["current"]
    lock = DeviceLock(StateDir(device.state))
    lock.acquire("an update in another terminal")
    try:
        unknown = run("--config", str(device.config), "rollback", "core", "--to", "9.9.9", "--json")
        known = run("--config", str(device.config), "rollback", "core", "--to", running, "--json")
    finally:
        lock.release()

    body = json.loads(unknown.stdout)["body"]
    assert unknown.returncode == 2, unknown.stderr
    assert (body["success"], body["outcome"]) == (False, "refused")
    releases_dir = device.home / "releases" / "core"
    assert body["message"].startswith(f"core rollback refused: core 9.9.9 is neither retained in {releases_dir} nor "
                                      f"backed up in {device.home / 'backups'} (")
    assert "busy" not in body["message"] and body["message"].endswith("Nothing was changed.")
    assert "busy" in json.loads(known.stdout)["body"]["message"], "a version it keeps goes on to the lock"
    assert (set(runs.iterdir()) if runs.is_dir() else set()) == runs_before, "no playbook may run"


async def test_the_refusal_lists_the_versions_kept(tmp_path):
    from dunebugger_updater import ComponentUpdater, load_settings

    backups = tmp_path / "backups"
    (tmp_path / "releases" / "core" / "1.1.0").mkdir(parents=True)
    backups.mkdir()
    for name in ("core-1.0.0-20260101T000000.tar.gz", "compose-scheduler-20260101T000000-1.0.0.yml",
                 "compose-scheduler-20260201T000000-1.2.0.yml", "compose-remote-20260101T000000-0.9.0.yml"):
        (backups / name).write_text("")
    config = tmp_path / "dunebugger.conf"
    config.write_text(f"[Updater]\nstatePath = {tmp_path / 'state'}\ncoreInstallPath = {tmp_path / 'core'}\n"
                      f"backupPath = {backups}\ndockerComposePath = {tmp_path / 'compose.yml'}\n")
    updater = ComponentUpdater(load_settings(config, environ={}))

    core = await updater.rollback_component("core", to="2.0.0")
    scheduler = await updater.rollback_component("scheduler", to="1.1.0")

    assert "(retained: 1.0.0, 1.1.0)" in core.message
    assert f"no compose backup of scheduler at 1.1.0 in {backups} (backed up: 1.0.0, 1.2.0)" in scheduler.message
    assert [entry.outcome for entry in updater.get_history()] == ["refused", "refused"]


# --- manifest generate, then validate with the same configuration --------------------------

CONFIGS = {
    "no configuration": ("", "dunebugger-1.2.0.tar.gz"),
    "a device of its own": ("[Updater]\ncoreInstallPath = /srv/dune/core\nbackupPath = /srv/dune/backups\n"
                            "[Component:core]\nserviceName = dune-core\nassetPattern = core-{version}.tgz\n"
                            "healthUrl = http://127.0.0.1:5000/health\n"
                            "[Component:scheduler]\nservice = sched\nimage = localhost:5000/acme/scheduler\n",
                            "core-1.2.0.tgz"),
    "another account and a component of its own": ("[Updater]\ngithubAccount = acme\n"
                                                   "[Component:gateway]\ntype = container\nrepo = acme/gateway\n"
                                                   "image = ghcr.io/acme/gateway\nservice = gw\n",
                                                   "dunebugger-1.2.0.tar.gz"),
}


@pytest.mark.parametrize("configured", CONFIGS)
def test_what_generate_writes_validate_accepts_with_the_same_configuration(tmp_path, configured):
    text, archive_name = CONFIGS[configured]
    state = tmp_path / "state"
    config = tmp_path / "dunebugger.conf"
    config.write_text(text.replace("[Updater]\n", f"[Updater]\nstatePath = {state}\n", 1) if text
                      else f"[Updater]\nstatePath = {state}\n")
    archive = releases.build_release(tmp_path / "dist", "1.2.0")
    archive = archive.rename(archive.with_name(archive_name))
    components = ["core", "python_app", "scheduler", "remote", "container"] + (["gateway"] if "gateway" in text else [])

    for component in components:
        manifest = tmp_path / f"{component}.yaml"
        extra = [str(archive), "--migration-script", "scripts/migrate.sh"] if component in ("core", "python_app") else []
        made = run("manifest", "generate", "--config", str(config), "--component", component, "--version", "1.2.0",
                   "--health-url", "http://localhost:5000/health", *extra, "-o", str(manifest), cwd=tmp_path)
        assert made.returncode == 0, (component, made.stderr)
        checked = run("manifest", "validate", str(manifest), "--config", str(config), "--component", component,
                      "--version", "v1.2.0", cwd=tmp_path)
        assert checked.returncode == 0, (component, checked.stderr)
        assert "on this device would use it" in checked.stdout
    assert not state.exists(), "generating a manifest touches nothing of the device"


def test_generate_for_a_component_that_is_not_configured_is_bad_input(tmp_path):
    done = run("manifest", "generate", "--component", "nope", "--version", "1.2.0", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == ("dunebugger-updater: --component 'nope' is neither a configured component nor a type "
                           "(known: core, scheduler, remote, python_app, container)\n")
