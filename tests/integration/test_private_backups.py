"""Backups hold what the installation holds, secrets included: a core backup, a compose
file's copy, the image id and the recorded checks are written 0600 from their creation
(whatever the umask), in a backup directory that only its owner may enter (created or
tightened to 0700; another user's is refused). A release restored from a backup gets
its own mode back. The real playbooks run on the sandbox device; the container
modules run as Ansible runs them."""

from __future__ import annotations

import os
import stat
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.core_sandbox import Sandbox, releases, run_module, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration

NOBODY = 65534
SECRET = "api_key=do-not-share\n"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def any_umask() -> Iterator[None]:
    """umask 0 in the test and so in the playbooks it runs: a file not created with its
    own mode would be world-readable."""
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.fixture
def sandbox(tmp_path) -> Iterator[Sandbox]:
    """A sandbox whose installation only its owner may read, with a secret in it, and
    the backup directory an earlier updater left readable by all."""
    box = start_sandbox(tmp_path)
    (box.core / "secret.conf").write_text(SECRET)
    (box.core / "secret.conf").chmod(0o600)
    box.core.chmod(0o700)
    (box.home / "backups").chmod(0o755)
    yield box
    stop_sandbox(box)


def test_a_private_installation_stays_private_in_its_backup(sandbox, any_umask):
    result = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"))

    assert result.rc == 0, result.output
    backups = sandbox.home / "backups"
    (backup,) = backups.glob("core-1.0.0-*.tar.gz")
    assert (mode(backups), mode(backup)) == (0o700, 0o600)
    assert [path.name for path in backups.iterdir()] == [backup.name], "no temporary file left"
    with tarfile.open(backup) as tar:
        assert tar.getmember("1.0.0").mode & 0o777 == 0o700
        assert tar.getmember("1.0.0/secret.conf").mode & 0o777 == 0o600
    assert mode(sandbox.releases / ".previous") == 0o600


def test_a_release_restored_from_its_backup_is_as_private_as_it_was(sandbox):
    assert sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0")).rc == 0
    os.rename(sandbox.releases / "1.0.0", sandbox.home / "pruned")  # only the backup is left

    result = sandbox.rollback()

    assert result.rc == 0, result.output
    restored = sandbox.releases / "1.0.0"
    assert (mode(restored), mode(restored / "secret.conf")) == (0o700, 0o600)
    assert (restored / "secret.conf").read_text() == SECRET
    assert sandbox.health()[1]["version"] == "1.0.0"


def test_a_backup_directory_of_another_user_is_refused_before_the_switch(sandbox):
    backups = sandbox.home / "backups"
    os.chown(backups, NOBODY, NOBODY)
    pid = sandbox.pid()

    result = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"))

    assert result.rc != 0
    assert f"{backups} belongs to uid {NOBODY}, not to uid 0 who writes the backups there" in result.output
    assert "chown" in result.output
    assert (backups.stat().st_uid, mode(backups), os.listdir(backups)) == (NOBODY, 0o755, [])
    assert sandbox.pid() == pid and sandbox.health()[1]["version"] == "1.0.0"


# --- the modules the container roles back up with ------------------------------------


@pytest.fixture
def compose(tmp_path) -> Path:
    path = tmp_path / "docker-compose.yml"
    path.write_text("services:\n  scheduler:\n    image: ghcr.io/x/scheduler:1.0.0\n"
                    "    environment:\n      - API_KEY=do-not-share\n")
    path.chmod(0o644)
    return path


def test_a_compose_backup_and_its_image_id_are_private(tmp_path, compose, any_umask):
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o755)
    copy, image = backups / "compose-scheduler-20260101T120000-1.0.0.yml", backups / "compose-x.image"

    copied = run_module("backup_file", {"src": str(compose), "dest": str(copy)})
    recorded = run_module("backup_file", {"content": "sha256:0f4c\n", "dest": str(image)})

    assert copied["changed"] and recorded["changed"], (copied, recorded)
    assert (copy.read_bytes(), image.read_text()) == (compose.read_bytes(), "sha256:0f4c\n")
    assert (mode(backups), mode(copy), mode(image)) == (0o700, 0o600, 0o600)
    assert time.time() - copy.stat().st_mtime < 60, "the copy's age is the backup's (the age check reads it)"
    assert mode(compose) == 0o644


def test_a_compose_backup_goes_nowhere_another_user_may_enter(tmp_path, compose):
    backups = tmp_path / "backups"
    backups.mkdir(mode=0o755)
    os.chown(backups, NOBODY, NOBODY)

    result = run_module("backup_file", {"src": str(compose), "dest": str(backups / "compose.yml")})

    assert result["failed"]
    assert f"{backups} belongs to uid {NOBODY}" in result["msg"] and "chown" in result["msg"]
    assert os.listdir(backups) == []


def test_the_recorded_checks_of_a_container_are_private(tmp_path, any_umask):
    record = tmp_path / "backups" / "checks-scheduler-1.2.0.json"

    result = run_module("release_checks", {"path": str(record), "checks": {"health_url": "http://127.0.0.1/h"}})

    assert result["changed"] and not result.get("warnings"), result
    assert (mode(record.parent), mode(record)) == (0o700, 0o600)


def test_setting_a_tag_keeps_the_compose_file_its_owner_group_and_mode(compose):
    os.chown(compose, NOBODY, NOBODY)
    compose.chmod(0o640)

    result = run_module("compose_service_image", {"path": str(compose), "service": "scheduler",
                                                  "repository": "ghcr.io/x/scheduler", "tag": "1.1.0"})

    assert result["tag"] == "1.1.0", result
    info = compose.stat()
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (NOBODY, NOBODY, 0o640)
