"""Every verb of the installed `dunebugger-updater`, under the mistakes a newcomer makes
and the traps of a hostile machine: run as an unprivileged user (the CI runs as root, so
privileges are really dropped), a statePath that cannot be created, is a file, belongs
to root, is writable by others or holds a planted link, a config that is a directory,
unreadable, missing or not INI, wrong paths, a port in use, broken inputs.

Verbs and sub-verbs come from the argparse parser itself, so a new verb is swept too
(a required argument needs a sample value: the test says so). A verb that reads no
configuration runs once per user, not once per configuration. Every run must end
without a traceback, with exit status 0, 1 or 2, and say a failure in one line on
stderr; where a condition must stop a verb, it does so with exit status 2 and the
message that names the fix. Inputs fail early: nothing is updated, no playbook
changes anything.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from dunebugger_updater.cli import build_parser

NOBODY = 65534
CONSOLE_SCRIPT = Path(sys.executable).parent / "dunebugger-updater"
TIMEOUT = 60


@dataclass(frozen=True)
class Condition:
    name: str
    config: str  # given with --config
    unprivileged: bool = True
    stops: tuple[str, ...] = ()  # verbs this condition must stop (exit 2, `says`); READS_CONFIG: all that read it
    says: str = ""


READS_CONFIG = ("*",)
USES_STATE = ("check", "versions", "update", "rollback", "recover", "history", "serve", "fleet check", "fleet update",
              "fleet rollback")
WRITES_STATE = tuple(verb for verb in USES_STATE if verb not in ("versions", "history"))  # reading a missing one is fine


@dataclass(frozen=True)
class Sweep:
    root: Path
    busy_port: int


def leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(verb path, parser) of every runnable verb and sub-verb."""
    subparsers = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
        return
    for name, child in subparsers[0].choices.items():
        yield from leaf_commands(child, (*path, name))


def sample_arguments(path: tuple[str, ...], parser: argparse.ArgumentParser, samples: dict[str, list[str]]) -> list[str]:
    """Required arguments with sample values, plus the flags that keep a run harmless."""
    argv: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        positional = not action.option_strings
        if action.dest in SAFETY:
            argv += [action.option_strings[0], *SAFETY[action.dest](samples)]
        elif action.required:
            if action.choices:
                value = [next(iter(action.choices))]
            elif action.dest in samples:
                value = samples[action.dest]
            else:
                pytest.fail(f"{' '.join(path)}: no sample value for {action.dest!r}; add one to SAMPLES")
            argv += value if positional else [action.option_strings[0], *value]
    return argv


# Flags that every run gets when its verb has them: never a real update, never a listener that stays.
SAFETY = {
    "dry_run": lambda samples: [],
    "port": lambda samples: samples["port"],
}


@pytest.fixture(scope="module")
def sweep() -> Iterator[Sweep]:
    root = Path(tempfile.mkdtemp(prefix="dunebugger-sweep-"))
    root.chmod(0o755)  # the unprivileged user must reach its inputs
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    try:
        yield Sweep(root, holder.getsockname()[1])
    finally:
        holder.close()
        shutil.rmtree(root, ignore_errors=True)


def make_world(root: Path) -> tuple[dict[str, list[str]], list[Condition]]:
    """The files every condition points at, the sample arguments, and the conditions."""
    nobody_home = _mkdir(root / "nobody", 0o755, NOBODY)
    closed = root / "closed"  # root's, 0755: the unprivileged user cannot create anything in it
    _mkdir(closed, 0o755)
    _mkdir(closed / "state-of-root", 0o700)
    (root / "a-file").write_text("")
    open_to_all = _mkdir(root / "open-to-all", 0o777, NOBODY)
    open_to_all.chmod(0o777)
    planted = _mkdir(root / "planted", 0o700, NOBODY)
    (planted / "history.jsonl").symlink_to("/etc/passwd")
    own = _mkdir(nobody_home / "state", 0o700, NOBODY)
    _mkdir(root / "not-a-file.conf", 0o755)
    (root / "unreadable.conf").write_text("[Updater]\n")
    (root / "unreadable.conf").chmod(0o600)
    (root / "binary.conf").write_bytes(b"\x00\xff\xfe[Updater\n\x80")
    (root / "no-section.conf").write_text(f"statePath = {root}/state\n")
    broken_manifest = root / "update-manifest.yaml"
    broken_manifest.write_text("version: [1.0\ncomponent_type: python_app\n")
    inventory = root / "inventory.yml"
    inventory.write_text("all:\n  hosts:\n    nowhere:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n")
    not_a_dir = _mkdir(root / "compose-is-a-dir", 0o755)

    def conf(name: str, state: Path, extra: str = "") -> str:
        path = root / f"{name}.conf"
        path.write_text(f"[Updater]\nstatePath = {state}\ngithubApiUrl = http://127.0.0.1:9\n"
                        f"coreInstallPath = {root / 'a-file'}\ndockerComposePath = {not_a_dir}\n"
                        f"backupPath = {closed}\nhttpTimeoutSeconds = 2\n{extra}")
        path.chmod(0o644)
        return str(path)

    conditions = [
        Condition("wrong paths, closed API port, port in use", conf("wrong", own)),
        Condition("statePath cannot be created", conf("uncreatable", closed / "state"), stops=WRITES_STATE,
                  says="permission denied: run as root, or set statePath"),
        Condition("statePath belongs to root", conf("roots", closed / "state-of-root"), stops=USES_STATE,
                  says="belongs to root, not to nobody: run as root, or set statePath"),
        Condition("statePath is a file", conf("file", root / "a-file"), stops=USES_STATE, says="is not a directory"),
        Condition("statePath writable by others", conf("open", open_to_all), stops=USES_STATE, says="chmod 700"),
        Condition("statePath holds a planted link", conf("planted", planted), stops=USES_STATE,
                  says="history.jsonl -> /etc/passwd"),
        Condition("config is a directory", str(root / "not-a-file.conf"), stops=READS_CONFIG, says="is a directory"),
        Condition("config unreadable", str(root / "unreadable.conf"), stops=READS_CONFIG,
                  says="cannot read: permission denied"),
        Condition("config without a section", str(root / "no-section.conf"), stops=READS_CONFIG,
                  says="put [Updater] on the line above"),
        Condition("config is not text", str(root / "binary.conf"), stops=READS_CONFIG, says="not UTF-8 text"),
        Condition("root, statePath of another user", conf("others", own), unprivileged=False, stops=USES_STATE,
                  says="belongs to nobody, not to root: chown -R root"),
        Condition("root, statePath below a file", conf("below", root / "a-file" / "state"), unprivileged=False,
                  stops=USES_STATE, says="a part of the path is not a directory"),
    ]
    samples = {"component": ["core"], "file": [str(broken_manifest)], "inventory": [str(inventory)],
               "version": ["1.0.0"], "artifacts": [str(root / "missing-1.0.0.tar.gz")],
               "output": [str(root / "bundle")]}
    return samples, conditions


def test_no_verb_shows_a_traceback_under_hostile_conditions(sweep):
    samples, conditions = make_world(sweep.root)
    samples["port"] = [str(sweep.busy_port)]
    commands = [(path, sample_arguments(path, parser, samples), parser.get_default("needs_settings") is not False)
                for path, parser in leaf_commands(build_parser())]
    assert {" ".join(path) for path, _, _ in commands} >= {*USES_STATE, "manifest validate", "manifest generate", "demo"}
    first_of_each_user = {condition.unprivileged: condition for condition in reversed(conditions)}.values()

    def sweep_one(condition: Condition) -> list[str]:
        # One condition's verbs one after the other: they share its statePath.
        return [problem for path, argv, reads_config in commands if reads_config or condition in first_of_each_user
                for problem in judge(condition, path, reads_config, execute(sweep.root, condition, path, argv))]

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [problem for found in pool.map(sweep_one, conditions) for problem in found]
    assert not problems, "\n".join(problems)


def execute(root: Path, condition: Condition, path: tuple[str, ...], argv: list[str]) -> subprocess.CompletedProcess[str]:
    command = [str(CONSOLE_SCRIPT), "--config", condition.config, *path, *argv]
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                   "HOME": "/nonexistent" if condition.unprivileged else str(root),
                   "TMPDIR": str(root / "a-file" / "tmp")}  # nowhere to write: the demo must say so, not crash
    if condition.unprivileged:
        command = as_nobody(command, root / "mnt")
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=environment, cwd=root,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(command, -1, str(exc.stdout or ""), f"did not finish in {TIMEOUT} s")


def judge(condition: Condition, path: tuple[str, ...], reads_config: bool,
          done: subprocess.CompletedProcess[str]) -> Iterator[str]:
    verb = " ".join(path)
    must_stop = (verb in condition.stops) or (condition.stops == READS_CONFIG and reads_config)
    where = f"[{condition.name}] dunebugger-updater {verb} (exit {done.returncode}):\n{done.stderr[-2000:]}"
    lines = done.stderr.strip().splitlines()
    if "Traceback (most recent call last)" in done.stderr + done.stdout:
        yield f"traceback: {where}"
    elif done.returncode not in (0, 1, 2):
        yield f"exit status not 0/1/2: {where}"
    elif done.returncode != 0 and not (lines or done.stdout.strip()):
        yield f"failed without a word: {where}"
    elif len(lines) > 1:
        yield f"more than one line on stderr: {where}"
    elif must_stop and (done.returncode != 2 or condition.says not in done.stderr):
        yield f"expected exit 2 and {condition.says!r}: {where}"


# --- dropping privileges for real -----------------------------------------------------------


def as_nobody(command: list[str], spare: Path) -> list[str]:
    """`command` as uid/gid 65534 with no groups. If the interpreter lives below a
    directory others cannot enter (a Python under /root), a private mount namespace
    shows only the interpreter's prefix there, nothing else of that directory
    (`spare`, an empty directory, holds the prefix while the view is made)."""
    dropped = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command]
    prefix = Path(os.path.realpath(sys.base_prefix))
    hidden = next((parent for parent in reversed(prefix.parents) if not os.stat(parent).st_mode & stat.S_IXOTH), None)
    if hidden is None:
        return dropped
    spare.mkdir(exist_ok=True)
    script = ('set -e; mount --bind "$1" "$3"; mount -t tmpfs -o mode=755 tmpfs "$2"; '
              'mkdir -p "$1"; mount --move "$3" "$1"; shift 3; exec "$@"')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(prefix), str(hidden),
            str(spare), *dropped]


def test_the_demo_runs_for_a_user_without_a_home(sweep):
    """The README's first command as a newcomer runs it: not root, and here without a
    writable home either (Ansible keeps its files in the run's private directory)."""
    done = subprocess.run(as_nobody([str(CONSOLE_SCRIPT), "demo"], sweep.root / "mnt"), capture_output=True, text=True,
                          timeout=600, cwd=sweep.root, stdin=subprocess.DEVNULL,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8", "HOME": "/nonexistent"})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert done.stdout.rstrip().endswith("Demo finished: update applied, bad release rolled back.")
    assert "Traceback" not in done.stdout + done.stderr


def test_the_sweep_really_drops_privileges(sweep):
    probe = subprocess.run(as_nobody([sys.executable, "-c", "import os; print(os.geteuid(), os.getegid(), os.getgroups())"],
                                     sweep.root / "mnt"),
                           capture_output=True, text=True, timeout=TIMEOUT, env={"TMPDIR": "/tmp"})
    assert probe.stdout.split() == ["65534", "65534", "[]"], probe.stderr


def _mkdir(path: Path, mode: int, owner: int = 0) -> Path:
    path.mkdir(mode=mode)
    path.chmod(mode)
    os.chown(path, owner, owner)
    return path
