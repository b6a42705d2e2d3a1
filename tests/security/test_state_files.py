"""A local attacker and statePath: links planted where the updater keeps its lock,
journal, history, caches and downloads, and a statePath others may write to or own.

Each test plants the trap on the real file system, runs real operations (in-process,
or the command as its own process) and asserts the target outside statePath is
untouched and the operation either refused with a message naming the path and the fix,
or replaced the link (an atomic write renames over it, never writes through it)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dunebugger_updater import ComponentUpdater, Settings, load_settings
from dunebugger_updater.demo import DemoDevice
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.device.history import History, HistoryEntry
from dunebugger_updater.device.journal import Journal, JournalEntry
from dunebugger_updater.device.lock import DeviceLock
from dunebugger_updater.errors import StateDirError
from dunebugger_updater.release.download import DownloadPolicy, download_verified
from dunebugger_updater.statedir import SUBDIRECTORIES, StateDir
from support.attack_kit import ASSET, attempt
from support.cli import run_cli

pytestmark = pytest.mark.usefixtures("clean_env")

NOBODY = 65534
STATE_FILES = ("update.lock", "journal.json", "history.jsonl", "last-check.json", "http-cache.json",
               "announced.json", "runs", "downloads", "fleet-runs", "logs")


class Sentinel:
    """A file outside statePath that belongs to someone else; nothing may touch it."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(b"not the updater's\n")
        os.chown(path, NOBODY, NOBODY)
        os.chmod(path, 0o644)
        self.path = path
        self.before = self._state()

    def _state(self) -> tuple[str, int, int, int]:
        info = os.stat(self.path)
        return hashlib.sha256(self.path.read_bytes()).hexdigest(), info.st_mode, info.st_uid, info.st_mtime_ns

    def assert_untouched(self) -> None:
        assert self._state() == self.before, f"{self.path} was changed through a link in statePath"


@pytest.fixture
def sentinel(tmp_path: Path) -> Sentinel:
    (tmp_path / "elsewhere").mkdir()
    return Sentinel(tmp_path / "elsewhere" / "victim")


def config(tmp_path: Path, github: FakeGitHub) -> Path:
    path = tmp_path / "dunebugger.conf"
    path.write_text(f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {tmp_path / 'state'}\n"
                    f"coreInstallPath = {tmp_path / 'core'}\ndockerComposePath = {tmp_path / 'compose.yml'}\n"
                    f"backupPath = {tmp_path / 'backups'}\n")
    return path


def operations(updater: ComponentUpdater) -> dict[str, Callable[[], Awaitable[Any]]]:
    """Every way the command line and the service use statePath."""

    async def in_thread(function: Callable[[], Any]) -> Any:
        return await asyncio.to_thread(function)

    return {
        "check": lambda: updater.check_updates(force=True),
        "versions": lambda: in_thread(updater.get_all_versions),
        "history": lambda: in_thread(updater.get_history),
        "update --dry-run": lambda: updater.update_component("core", dry_run=True),
        "rollback": lambda: updater.rollback_component("core"),
        "recover": updater.recover,
    }


# --- links planted before the first use: every operation refuses --------------------------


@pytest.mark.parametrize("name", STATE_FILES)
async def test_a_link_planted_in_state_path_is_refused_by_every_operation(tmp_path, github, sentinel, name):
    settings = load_settings(config(tmp_path, github), environ={})
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    (state / name).symlink_to(sentinel.path if "." in name else sentinel.path.parent)
    for what, operation in operations(ComponentUpdater(settings)).items():
        with pytest.raises(StateDirError) as refused:
            await operation()
        message = str(refused.value)
        assert f"{name} -> {sentinel.path if '.' in name else sentinel.path.parent}" in message, (what, message)
        assert "remove them" in message and str(state / name) in message
    sentinel.assert_untouched()
    assert sorted(os.listdir(sentinel.path.parent)) == ["victim"], "something was created beside the victim"


def test_the_command_refuses_with_one_line_naming_the_link_and_exit_status_2(tmp_path, github, sentinel):
    conf = config(tmp_path, github)
    (tmp_path / "state").mkdir(mode=0o700)
    (tmp_path / "state" / "history.jsonl").symlink_to(sentinel.path)
    for verb in (["history"], ["rollback", "core"], ["check"]):
        run = run_cli(*verb, config=conf, timeout=60)
        assert run.returncode == 2, (verb, run.stderr)
        assert run.stderr.count("\n") == 1 and "history.jsonl -> " in run.stderr and "remove them" in run.stderr
    sentinel.assert_untouched()


# --- links that appear after the check (a race): no state file is opened through one ------


@pytest.fixture
def checked_state(tmp_path: Path) -> StateDir:
    state = StateDir(tmp_path / "state")
    state.ready()
    return state


def test_lock_and_history_never_open_through_a_link(checked_state, sentinel):
    history = History(checked_state)
    for name, use in (("update.lock", lambda: DeviceLock(checked_state).acquire("update of core")),
                      ("history.jsonl", lambda: history.append(_entry())),
                      ("history.jsonl", history.entries)):
        path = checked_state.path / name
        path.symlink_to(sentinel.path)
        with pytest.raises(StateDirError, match=f"{path} is a symbolic link; state files must be plain files"):
            use()
        path.unlink()
    sentinel.assert_untouched()


def test_atomic_state_files_replace_a_link_instead_of_writing_through_it(checked_state, sentinel):
    """journal.json, last-check.json, the HTTP cache: temp file (O_EXCL) + rename."""
    journal = Journal(checked_state)
    (checked_state.path / "journal.json").symlink_to(sentinel.path)
    journal.begin(JournalEntry("20260101T000000-core-update-abcdef", "update", "core", "1.0.0", "1.1.0", "now"))
    assert not (checked_state.path / "journal.json").is_symlink()
    assert journal.pending().to_version == "1.1.0"
    journal.finish()
    sentinel.assert_untouched()


def test_only_plain_files_of_their_own_are_state_files(checked_state, tmp_path):
    os.mkfifo(checked_state.path / "journal.json")  # would block a reader forever
    with pytest.raises(StateDirError, match="journal.json is not a plain file"):
        Journal(checked_state).pending()
    outside = tmp_path / "outside"
    outside.write_bytes(b"x")
    os.link(outside, checked_state.path / "history.jsonl")  # a second name of a file outside statePath
    with pytest.raises(StateDirError, match="history.jsonl has other hard links"):
        History(checked_state).append(_entry())
    assert outside.read_bytes() == b"x"


async def test_download_replaces_links_at_the_partial_and_final_names(device: DemoDevice, sentinel):
    device.publish("1.1.0")
    downloads = StateDir(device.state).subdir("downloads")
    for name in (ASSET + ".partial", ASSET):
        (downloads / name).unlink(missing_ok=True)
        (downloads / name).symlink_to(sentinel.path)
    result, _ = await attempt(device)
    assert result.success and result.outcome == "dry_run", result.message
    assert not (downloads / ASSET).is_symlink() and not (downloads / (ASSET + ".partial")).exists()
    sentinel.assert_untouched()


async def test_download_into_a_plain_directory_never_follows_a_link(tmp_path, github, sentinel):
    target = tmp_path / "dl"
    target.mkdir()
    github.add_release("o/r", "v1.0.0", assets={"a.tar.gz": b"payload"})
    url = f"{github.url}/o/r/releases/download/v1.0.0/a.tar.gz"
    (target / "a.tar.gz.partial").symlink_to(sentinel.path)
    policy = DownloadPolicy.from_settings(Settings(github_api_url=github.url))
    await download_verified(url, hashlib.sha256(b"payload").hexdigest(), target / "a.tar.gz", policy)
    assert (target / "a.tar.gz").read_bytes() == b"payload"
    sentinel.assert_untouched()


# --- statePath itself ------------------------------------------------------------------------


def test_a_fresh_state_path_and_its_subdirectories_are_created_0700(tmp_path):
    state = StateDir(tmp_path / "a" / "b" / "state")
    state.ready()
    for path in (state.path, *(state.path / name for name in SUBDIRECTORIES)):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o700, path
    History(state).append(_entry())
    assert stat.S_IMODE(os.stat(state.path / "history.jsonl").st_mode) == 0o600


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702, 0o720])
def test_a_state_path_writable_by_group_or_others_is_refused(tmp_path, mode):
    path = tmp_path / "state"
    path.mkdir()
    path.chmod(mode)
    with pytest.raises(StateDirError) as refused:
        StateDir(path).ready()
    assert str(refused.value) == (f"{path} is writable by group or others (mode {mode:04o}), who could redirect "
                                  f"the updater's files: chmod 700 {path}")


def test_a_state_path_of_another_user_is_refused(tmp_path):
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(StateDirError, match=f"{path} belongs to nobody, not to root: chown -R root {path}, or set statePath"):
        StateDir(path).ready()
    with pytest.raises(StateDirError, match="belongs to nobody"):
        StateDir(path).read_bytes("history.jsonl")  # reading is refused too: the files could be anyone's


def test_a_subdirectory_planted_as_another_users_directory_is_refused(tmp_path):
    state = tmp_path / "state"
    (state / "downloads").mkdir(parents=True, mode=0o700)
    state.chmod(0o700)
    os.chown(state / "downloads", NOBODY, NOBODY)
    with pytest.raises(StateDirError, match="downloads belongs to nobody"):
        StateDir(state).ready()


def test_a_state_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "state"
    path.write_text("")
    with pytest.raises(StateDirError, match=f"statePath {path} is a regular file, not a directory: remove it, or set "):
        StateDir(path).ready()


@pytest.mark.parametrize("kind", ["a character device", "a FIFO"])
def test_a_state_path_that_is_a_device_or_a_fifo_is_refused_without_advice_to_remove_it(tmp_path, kind):
    path = Path("/dev/null")
    if kind == "a FIFO":
        path = tmp_path / "fifo"
        os.mkfifo(path)
    for use in (lambda state: state.ready(), lambda state: state.read_bytes("history.jsonl")):
        with pytest.raises(StateDirError) as refused:
            use(StateDir(path))
        assert str(refused.value) == (f"statePath {path} is {kind}{' (named pipe)' if kind == 'a FIFO' else ''}, "
                                      "not a directory: set statePath ([Updater] statePath or UPDATER_STATEPATH) to "
                                      "a directory of your own")


def test_a_state_path_that_is_a_link_to_a_directory_of_ours_is_used(tmp_path):
    """The administrator's choice (statePath on persistent storage): its target is checked."""
    target = tmp_path / "persistent"
    target.mkdir(mode=0o700)
    (tmp_path / "state").symlink_to(target)
    History(StateDir(tmp_path / "state")).append(_entry())
    assert (target / "history.jsonl").is_file()


def _entry() -> HistoryEntry:
    return HistoryEntry("20260101T000000-core-update-abcdef", "update", "core", "1.0.0", "1.1.0", "updated",
                        True, "Updated core to 1.1.0", "now", "now")
