"""Every field of a core manifest does what the seed says, or the update is refused
before anything changes: real releases, real playbook runs, the device checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo.sandbox import releases
from support.fingerprint import sha256_file

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

MIGRATE = (b'#!/bin/sh\necho ran > "$DUNEBUGGER_RELEASE_DIR/migrated"\n', 0o755)


def manifest(*lines: str) -> bytes:
    return ('version: "1.1.0"\ncomponent_type: "python_app"\n' + "\n".join(lines) + "\n").encode()


def migration(optional: str = "") -> str:
    return ('update_steps:\n  - action: "run_migrations"\n    script: "scripts/migrate.sh"\n'
            + (f"    optional: {optional}\n" if optional else ""))


def task_results(device, run_id: str, task: str) -> list[dict]:
    events = device.state / "runs" / run_id / "artifacts" / run_id / "job_events"
    found = []
    for path in events.glob("*.json"):
        event = json.loads(path.read_text())
        data = event.get("event_data", {})
        if event.get("event") == "runner_on_ok" and data.get("task") == task:
            found.append(data["res"])
    return found


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "update"])
async def test_a_required_migration_the_release_lacks_refuses_the_update(device, dry_run):
    device.publish("1.1.0", manifest=manifest(migration()))
    before, pid = device.fingerprint(), device.app_pid()

    result = await ComponentUpdater(device.settings()).update_component("core", dry_run=dry_run)

    assert (result.success, result.outcome, result.dry_run) == (False, "refused", dry_run), result.message
    assert "scripts/migrate.sh" in result.message and "optional: true" in result.message
    assert "Nothing was changed" in result.message
    assert device.fingerprint() == before and device.app_pid() == pid


async def test_an_optional_migration_may_be_missing_and_a_present_one_runs(device):
    device.publish("1.1.0", manifest=manifest(migration("true")))
    assert (await ComponentUpdater(device.settings()).update_component("core")).success

    archive = releases.build_release(device.artifacts, "1.2.0", extra_members={"scripts/migrate.sh": MIGRATE})
    device.github.add_release("marco-svitol/dunebugger", "v1.2.0", assets={"dunebugger-1.2.0.tar.gz": archive.read_bytes()},
                              manifest=manifest(migration()).replace(b"1.1.0", b"1.2.0"))
    result = await ComponentUpdater(device.settings()).update_component("core")
    assert result.success, result.message
    assert (device.home / "releases" / "core" / "1.2.0" / "migrated").read_text().strip() == "ran"


async def test_backup_exists_reads_the_backup_back_before_the_switch(device):
    device.publish("1.1.0", manifest=manifest(
        "pre_update_checks:", '  - type: "backup_exists"', "    max_age_hours: 1"))

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert result.success, result.message
    [switch] = task_results(device, result.run_id, "Back up, stop, switch to the new release, migrate and start")
    assert switch["backup_members"] > 3 and Path(switch["backup"]).is_file()


@pytest.mark.parametrize(("field", "text"), [
    ("update_steps.stop_service.service_name",
     'update_steps:\n  - action: "stop_service"\n    service_name: "sshd"'),
    ("pre_update_checks.service_running.service_name",
     'pre_update_checks:\n  - type: "service_running"\n    service_name: "other"'),
    ("update_steps.extract_artifact.destination",
     'update_steps:\n  - action: "extract_artifact"\n    archive: "dunebugger-1.1.0.tar.gz"\n    destination: "/etc"'),
    ("update_steps.extract_artifact.archive",
     'update_steps:\n  - action: "extract_artifact"\n    archive: "other-1.1.0.tar.gz"'),
    ("update_steps.backup_installation.destination",
     'update_steps:\n  - action: "backup_installation"\n    destination: "/tmp/core.tar.gz"'),
    ("update_steps.install_requirements.requirements_file",
     'update_steps:\n  - action: "install_requirements"\n    requirements_file: "dev-requirements.txt"'),
    ("post_update_checks.version_check.expected_version",
     'post_update_checks:\n  - type: "version_check"\n    expected_version: "1.0.9"'),
    ("update_steps[1]", 'update_steps:\n  - action: "run_migrations"\n    script: "a.sh"\n'
                        '  - action: "run_migrations"\n    script: "b.sh"'),
])
async def test_a_manifest_that_contradicts_the_device_is_refused(device, field, text):
    device.publish("1.1.0", manifest=manifest(text))
    before = device.fingerprint()

    result = await ComponentUpdater(device.settings()).update_component("core", dry_run=True)

    assert (result.success, result.outcome) == (False, "refused"), result.message
    assert field in result.message
    assert device.fingerprint() == before


async def test_the_seeds_own_core_manifest_is_accepted_and_its_rollback_steps_named_informational(device):
    archive = releases.build_release(device.artifacts, "1.1.0", extra_members={"scripts/migrate.sh": MIGRATE})
    install = device.home / "core"
    text = SEED_CORE_MANIFEST.format(install=install, backups=device.home / "backups", port=device.port,
                                     url=device.github.asset_url("marco-svitol/dunebugger", "v1.1.0",
                                                                 "dunebugger-1.1.0.tar.gz"),
                                     sha256=sha256_file(archive))
    device.github.add_release("marco-svitol/dunebugger", "v1.1.0", assets={"dunebugger-1.1.0.tar.gz": archive.read_bytes()},
                              manifest=text.encode())

    result = await ComponentUpdater(device.settings()).update_component("core")

    assert result.success, result.message
    assert "rollback_steps: informational only" in result.manifest
    assert (device.home / "releases" / "core" / "1.1.0" / "migrated").is_file()


# The seed's core example, with this sandbox's paths, port and a real checksum.
SEED_CORE_MANIFEST = """\
version: "1.1.0"
component_type: "python_app"
min_remote_version: "1.0.0"
pre_update_checks:
  - type: "disk_space"
    minimum_mb: 10
    description: "Ensure sufficient disk space"
  - type: "service_running"
    service_name: "dunebugger"
    description: "Verify service is accessible before update"
update_steps:
  - action: "download_artifact"
    url: "{url}"
    checksum: "sha256:{sha256}"
  - action: "backup_installation"
    source: "{install}"
    destination: "{backups}/core.TIMESTAMP.tar.gz"
  - action: "stop_service"
    service_name: "dunebugger"
  - action: "extract_artifact"
    archive: "dunebugger-1.1.0.tar.gz"
    destination: "{install}"
  - action: "install_requirements"
    requirements_file: "{install}/requirements.txt"
  - action: "run_migrations"
    script: "{install}/scripts/migrate.sh"
    optional: true
  - action: "start_service"
    service_name: "dunebugger"
post_update_checks:
  - type: "service_active"
    service_name: "dunebugger"
    timeout_seconds: 30
  - type: "health_endpoint"
    url: "http://localhost:{port}/health"
    timeout_seconds: 20
    expected_status: 200
  - type: "version_check"
    expected_version: "1.1.0"
rollback_steps:
  - action: "stop_service"
    service_name: "dunebugger"
  - action: "restore_backup"
    source: "latest_backup"
    destination: "{install}"
  - action: "start_service"
    service_name: "dunebugger"
"""
