"""Tokens given to the updater through its environment reach no file under statePath
and no child: a real `dunebugger-updater update core` process with tokens in its
environment, the real playbooks, the app started by the `command` service manager and
the release's migration script, read through /proc/<pid>/environ."""

from __future__ import annotations

import glob
import os
import subprocess
import time
from pathlib import Path

import pytest

from dunebugger_updater.demo.sandbox import releases
from support.cli import cli_argv
from support.device import SandboxDevice
from support.hostile_github import HostileGitHub

pytestmark = pytest.mark.integration

SECRETS = {
    "GITHUB_TOKEN": "ghp_secretGithubTokenFromTheEnvironment",
    "UPDATER_SERVETOKEN": "secretServeTokenFromTheEnvironment",
    "UPDATER_NOTIFYURLS": "json://127.0.0.1:9/secretNotifyUrlFromTheEnvironment",
    "DEVICE_DATABASE_PASSWORD": "secretPasswordOfSomethingElse",
}

# docs/security.md, "What children get".
PLAYBOOK_VARIABLES = {
    "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
    "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "SSH_AUTH_SOCK",
    "ANSIBLE_ROLES_PATH", "ANSIBLE_RETRY_FILES_ENABLED", "ANSIBLE_NOCOLOR", "ANSIBLE_HOME", "ANSIBLE_REMOTE_TMP",
    "ANSIBLE_CALLBACK_PLUGINS", "ANSIBLE_STDOUT_CALLBACK", "ANSIBLE_HOST_KEY_CHECKING",
    "ANSIBLE_CACHE_PLUGIN", "ANSIBLE_CACHE_PLUGIN_CONNECTION", "AWX_ISOLATED_DATA_DIR",
}
MIGRATION_VARIABLES = PLAYBOOK_VARIABLES | {
    "DUNEBUGGER_RELEASE_DIR", "DUNEBUGGER_VERSION", "DUNEBUGGER_PREVIOUS_VERSION", "VIRTUAL_ENV", "PWD",
}
APP_VARIABLES = {"PATH", "HOME", "TZ", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES"}
DETACHED_VARIABLES = {"PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR",
                      "DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "SSH_AUTH_SOCK"}

# The migration script writes the environment it was started with (as the kernel keeps
# it: before its shell adds anything) into the new release.
DUMP_ENVIRONMENT = b'#!/bin/sh\ncat /proc/$$/environ > "$DUNEBUGGER_RELEASE_DIR/migration.environ"\n'


def environ_of(path: Path | str) -> dict[str, str]:
    raw = Path(path).read_bytes()
    return dict(entry.split("=", 1) for entry in raw.decode().split("\0") if entry)


def updater_environment() -> dict[str, str]:
    """The test's own environment (whatever it holds) plus the secrets."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_") and k != "GITHUB_TOKEN"}
    return {**base, **SECRETS}


def files_holding(root: Path, secret: str) -> list[str]:
    return [str(path) for path in root.rglob("*")
            if path.is_file() and not path.is_symlink() and secret.encode() in path.read_bytes()]


def publish_dumping_release(device: SandboxDevice) -> None:
    archive = releases.build_release(device.artifacts, "1.1.0",
                                     extra_members={"scripts/migrate.sh": (DUMP_ENVIRONMENT, 0o755)})
    device.publish_archive("1.1.0", archive)


def update(device: SandboxDevice) -> tuple[subprocess.CompletedProcess[str], dict[str, str] | None]:
    """`update core` as a process of its own; also the environment of a detached run,
    read while it lives (None when the run was not detached)."""
    argv = cli_argv("update", "core", config=device.config)
    with subprocess.Popen(argv, env=updater_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as process:
        detached = None
        while process.poll() is None:
            detached = detached or _detached_environ(device.state)
            time.sleep(0.05)
        out, err = process.communicate()
    return subprocess.CompletedProcess(argv, process.returncode, out, err), detached


def _detached_environ(state: Path) -> dict[str, str] | None:
    for pid_file in glob.glob(str(state / "runs" / "*" / "detached.pid")):
        try:
            return environ_of(f"/proc/{Path(pid_file).read_text().strip()}/environ")
        except (OSError, ValueError):
            continue
    return None


@pytest.mark.parametrize("detached", [False, True], ids=["in-process", "detached"])
def test_tokens_in_the_environment_reach_no_file_and_no_child(tmp_path, detached):
    extra = "selfHosted = true\n" if detached else ""
    with HostileGitHub(require_token=SECRETS["GITHUB_TOKEN"]) as github:
        device = SandboxDevice(tmp_path / "device", github, extra_config=extra)
        device.start()
        try:
            publish_dumping_release(device)
            done, detached_environ = update(device)
            assert done.returncode == 0, done.stdout + done.stderr
            assert device.health()["version"] == "1.1.0"  # the token was used: the API wants it

            app = environ_of(f"/proc/{device.app_pid()}/environ")
            migration = environ_of(device.home / "releases" / "core" / "1.1.0" / "migration.environ")
        finally:
            device.close()

    for name, secret in SECRETS.items():
        assert files_holding(device.state, secret) == [], f"{name} was written under statePath"
        for child, environ in (("app", app), ("migration", migration), ("detached run", detached_environ or {})):
            assert secret not in "\0".join(f"{k}={v}" for k, v in environ.items()), f"{name} reached the {child}"
    assert set(app) <= APP_VARIABLES, set(app) - APP_VARIABLES
    assert set(migration) <= MIGRATION_VARIABLES, set(migration) - MIGRATION_VARIABLES
    assert migration["DUNEBUGGER_PREVIOUS_VERSION"] == "1.0.0" and "PATH" in app
    assert list((device.state / "runs").glob("*/artifacts/*/command")), "the runs recorded their command"
    if detached:
        assert detached_environ is not None, "the detached run was never seen"
        assert set(detached_environ) <= DETACHED_VARIABLES, set(detached_environ) - DETACHED_VARIABLES
