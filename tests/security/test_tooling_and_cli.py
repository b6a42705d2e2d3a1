"""`manifest validate|generate`, and attacks through the `dunebugger-updater` command
the way an outside check would run them (exit status, JSON, nothing changed)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from dunebugger_updater.cli import main
from dunebugger_updater.release import manifest_tool
from dunebugger_updater.release.manifest import read_manifest
from support.attack_kit import Fingerprint, publish_raw
from support.cli import run_cli, run_cli_json

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "dunebugger-1.2.0.tar.gz"
    path.write_bytes(b"release bytes")
    return path


def test_generate_fills_the_standard_steps_and_validates(tmp_path, artifact, capsys):
    out = tmp_path / "update-manifest.yaml"
    assert main(["manifest", "generate", "--component", "python_app", "--version", "1.2.0", "--repo",
                 "marco-svitol/dunebugger", "--health-url", "http://localhost:5000/health",
                 "--migration-script", "scripts/migrate.sh", str(artifact), "--output", str(out)]) == 0
    manifest = read_manifest(out.read_bytes())
    assert manifest.checksum == manifest_tool.sha256_file(artifact)
    assert manifest.artifact_url == \
        "https://github.com/marco-svitol/dunebugger/releases/download/v1.2.0/dunebugger-1.2.0.tar.gz"
    assert manifest.migration_script == "scripts/migrate.sh" and manifest.checks.version_check
    actions = [step["action"] for step in yaml.safe_load(out.read_text())["update_steps"]]
    assert actions == ["download_artifact", "backup_installation", "stop_service", "extract_artifact",
                       "install_requirements", "run_migrations", "start_service"]
    assert main(["manifest", "validate", str(out), "--version", "v1.2.0", "--component", "python_app"]) == 0
    assert "valid python_app manifest for version 1.2.0" in capsys.readouterr().out


def test_generate_a_container_manifest(capsys):
    assert main(["manifest", "generate", "--component", "container", "--version", "1.1.0",
                 "--repo", "marco-svitol/dunebugger-scheduler"]) == 0
    document = yaml.safe_load(capsys.readouterr().out)
    steps = {step["action"]: step for step in document["update_steps"]}
    assert steps["update_compose"] == {"action": "update_compose", "service": "scheduler", "image_tag": "1.1.0",
                                       "description": "Update image tag in docker-compose"}
    assert steps["pull_image"]["image"] == "ghcr.io/marco-svitol/dunebugger-scheduler:1.1.0"


@pytest.mark.parametrize(("flag", "value"), [
    ("--version", '1.2.0"\nrun_migrations: evil'),
    ("--version", "{{ lookup('pipe','id') }}"),
    ("--health-url", "http://localhost:5000/health\"\n  - type: evil"),
    ("--health-url", "http://evil.example/health"),
    ("--service-name", "dunebugger; rm -rf /"),
    ("--service-name", "--help"),
    ("--migration-script", "../../bin/sh"),
    ("--repo", "a/b\" # {{ 7*7 }}"),
])
def test_odd_values_never_break_the_yaml_and_are_refused(tmp_path, artifact, flag, value, capsys):
    out = tmp_path / "m.yaml"
    argv = ["manifest", "generate", "--component", "python_app", "--version", "1.2.0", "--repo", "a/b",
            str(artifact), "--output", str(out), f"{flag}={value}"]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "would not be used by a device" in error or "is not a GitHub repository" in error
    assert not out.exists()


def test_quoting_keeps_odd_characters_as_data():
    for value in ['a"b', "a\\b", "x: y", "# c", "{{ 7*7 }}", "line\nbreak", "ü\u2028", "'"]:
        assert yaml.safe_load(f"key: {manifest_tool.yaml_string(value)}\n") == {"key": value}


@pytest.mark.parametrize(("text", "verdict"), [
    (b'version: "1.2.0"\ncomponent_type: "python_app"\nextra: 1\n', "invalid (a device ignores it"),
    (b'version: "1.2.0"\ncomponent_type: "python_app"\nupdate_steps:\n  - action: stop_service\n'
     b'    service_name: "a;b"\n', "refused (a device stops the update): update_steps[0].service_name"),
    (b'a: &a [1]\nb: *a\n', "refused (a device stops the update): YAML aliases are not allowed"),
    (b"version: [", "invalid (a device ignores it and uses the built-in procedure): the manifest is not valid YAML"),
])
def test_validate_names_field_problem_and_verdict(tmp_path, capsys, text, verdict):
    path = tmp_path / "m.yaml"
    path.write_bytes(text)
    assert main(["manifest", "validate", str(path)]) == 2
    assert verdict in capsys.readouterr().err


SEED_CORE_MANIFEST = """\
version: "1.2.0"
component_type: "python_app"

# Minimum version of remote component required to perform this update
min_remote_version: "1.0.0"

# Pre-update validation checks
pre_update_checks:
  - type: "disk_space"
    minimum_mb: 1000
    description: "Ensure sufficient disk space"

  - type: "service_running"
    service_name: "dunebugger"
    description: "Verify service is accessible before update"

# Update execution steps
update_steps:
  - action: "download_artifact"
    url: "https://github.com/marco-svitol/dunebugger/releases/download/v1.2.0/dunebugger-1.2.0.tar.gz"
    checksum: "sha256:{sha}"
    description: "Download release artifact"

  - action: "backup_installation"
    source: "/opt/dunebugger/core"
    destination: "/opt/dunebugger/backups/core.TIMESTAMP.tar.gz"
    description: "Backup current installation"

  - action: "stop_service"
    service_name: "dunebugger"
    description: "Stop the service"

  - action: "extract_artifact"
    archive: "dunebugger-1.2.0.tar.gz"
    destination: "/opt/dunebugger/core"
    description: "Extract new version"

  - action: "install_requirements"
    requirements_file: "/opt/dunebugger/core/requirements.txt"
    description: "Install Python dependencies"

  - action: "run_migrations"
    script: "/opt/dunebugger/core/scripts/migrate.sh"
    optional: true
    description: "Run database migrations if needed"

  - action: "start_service"
    service_name: "dunebugger"
    description: "Start the service"

# Post-update validation
post_update_checks:
  - type: "service_active"
    service_name: "dunebugger"
    timeout_seconds: 30
    description: "Verify service started successfully"

  - type: "health_endpoint"
    url: "http://localhost:5000/health"
    timeout_seconds: 60
    expected_status: 200
    description: "Check application health"

  - type: "version_check"
    expected_version: "1.2.0"
    description: "Verify correct version is running"

# Rollback procedure
rollback_steps:
  - action: "stop_service"
    service_name: "dunebugger"
    description: "Stop current version"

  - action: "restore_backup"
    source: "latest_backup"
    destination: "/opt/dunebugger/core"
    description: "Restore from backup"

  - action: "start_service"
    service_name: "dunebugger"
    description: "Start previous version"
"""


def validate(tmp_path: Path, text: str, *args: str, config: str = "") -> subprocess.CompletedProcess[str]:
    manifest = tmp_path / "update-manifest.yaml"
    manifest.write_text(text)
    conf = tmp_path / "dunebugger.conf"
    conf.write_text(config)
    return run_cli("manifest", "validate", str(manifest), *args, config=conf)


def test_the_seeds_core_manifest_is_valid_as_a_device_with_the_default_install_path_sees_it(tmp_path):
    """Its migration script is absolute (/opt/dunebugger/core/scripts/migrate.sh): inside
    the release only for a device whose core is installed there."""
    text = SEED_CORE_MANIFEST.format(sha="ab" * 32)
    valid = validate(tmp_path, text, "--version", "v1.2.0")
    assert valid.returncode == 0, valid.stderr
    assert valid.stdout.strip().endswith(
        "valid python_app manifest for version 1.2.0; core on this device would use it (install path /opt/dunebugger/core)")
    elsewhere = validate(tmp_path, text, config="[Updater]\ncoreInstallPath = /srv/core\n")
    assert elsewhere.returncode == 2
    refused = f"{tmp_path / 'update-manifest.yaml'}: refused (a device stops the update): "
    assert elsewhere.stderr.splitlines() == [refused + line for line in (
        "update_steps.run_migrations.script: '/opt/dunebugger/core/scripts/migrate.sh' is outside the release",
        "update_steps.backup_installation.source: '/opt/dunebugger/core' is not this device's '/srv/core'",
        "update_steps.extract_artifact.destination: '/opt/dunebugger/core' is not this device's '/srv/core'",
        "update_steps.install_requirements.requirements_file: '/opt/dunebugger/core/requirements.txt': only the "
        "release's own requirements.txt is installed")]


def test_validate_reports_every_problem_at_once_one_line_each(tmp_path):
    text = (SEED_CORE_MANIFEST.format(sha="ab" * 32)
            .replace('service_name: "dunebugger"\n    description: "Verify service is accessible',
                     'service_name: "a;b"\n    description: "Verify service is accessible')
            .replace('url: "http://localhost:5000/health"', 'url: "http://evil.example/health"')
            .replace('min_remote_version: "1.0.0"', 'min_remote_version: "1.0.0"\nextra: 1'))
    run = validate(tmp_path, text, "--version", "v1.3.0", "--component", "container")
    assert run.returncode == 2
    problems = [line.split(": ", 1)[1] for line in run.stderr.splitlines()]
    assert set(problems) >= {
        "refused (a device stops the update): pre_update_checks[1].service_name: 'a;b' does not match "
        "'^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$'",
        "invalid (a device ignores it and uses the built-in procedure): manifest: Additional properties are not "
        "allowed ('extra' was unexpected)",
        "refused (a device stops the update): version: the manifest says 1.2.0 but the release tag is 1.3.0",
        "refused (a device stops the update): component_type: 'python_app' does not match the component (container)",
        "refused (a device stops the update): post_update_checks.health_endpoint.url: 'http://evil.example/health' "
        "is not on this device (localhost)",
        "refused (a device stops the update): update_steps.run_migrations.script: "
        "'/opt/dunebugger/core/scripts/migrate.sh' is outside the release",
    }, run.stderr


def test_a_yaml_error_is_one_line_with_line_and_column(tmp_path):
    run = validate(tmp_path, 'version: "1.2.0"\ncomponent_type: [python_app\nmin_remote_version: "1.0.0"\n')
    assert run.returncode == 2
    (line,) = run.stderr.splitlines()
    assert line.endswith("invalid (a device ignores it and uses the built-in procedure): the manifest is not valid "
                         "YAML: expected ',' or ']', but got ':' (line 3, column 19)")


@pytest.mark.parametrize(("component", "verdict"), [
    ("core", "install path /opt/dunebugger/core"),
    ("python_app", "install path /opt/dunebugger/core"),
    ("scheduler", "component_type: 'python_app' does not match the component (container)"),
    ("nope", "--component 'nope' is neither a configured component nor a type (known: core, scheduler, remote, "
             "python_app, container)"),
])
def test_validate_checks_as_a_named_component_or_type(tmp_path, component, verdict):
    run = validate(tmp_path, SEED_CORE_MANIFEST.format(sha="ab" * 32), "--component", component)
    assert verdict in run.stdout + run.stderr
    assert run.returncode == (0 if "install path" in verdict else 2)


def test_the_component_options_list_the_types():
    for action in ("validate", "generate"):
        run = run_cli("manifest", action, "--help")
        assert "python_app" in run.stdout and "container" in run.stdout, run.stdout


def test_validate_reads_at_most_the_cap(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_bytes(b"#" * (10 * 1024 * 1024))
    assert main(["manifest", "validate", str(path)]) == 2
    assert "larger than 262144 bytes" in capsys.readouterr().err


def test_the_example_workflow_is_valid_yaml_and_uses_the_tool():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "release.yml").read_text())
    steps = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert any("manifest generate" in run for run in steps) and any("manifest validate" in run for run in steps)
    assert not any("${{ inputs" in run or "${{ github.event" in run for run in steps), \
        "workflow inputs must reach scripts through env, never inline (Actions template injection)"


# --- attacks through the command -------------------------------------------------------

@pytest.mark.integration
def test_cli_refuses_a_downgrade_and_a_hostile_manifest(device):
    publish_raw(device, "v1.1.0", manifest=b'a: &a [1]\nb: *a\n')
    before = Fingerprint(device)
    status, refused = run_cli_json("update", "core", config=device.config)
    assert status == 1, refused
    body = refused["body"]
    assert (body["success"], body["outcome"]) == (False, "refused")
    assert "aliases are not allowed" in body["message"]

    device.github.reset()
    publish_raw(device, "v0.9.0")
    status, downgrade = run_cli_json("update", "core", config=device.config)
    assert status == 1
    assert "never goes back" in downgrade["body"]["message"]
    before.assert_unchanged()

    _, history = run_cli_json("history", "--limit", "2", config=device.config)
    assert [entry["outcome"] for entry in history["body"]["entries"]] == ["refused", "refused"]
