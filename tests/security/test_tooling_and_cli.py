"""`manifest validate|generate`, and attacks through the `dunebugger-updater` command
the way an outside check would run them (exit status, JSON, nothing changed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from attack_kit import Fingerprint, publish_raw
from dunebugger_updater import manifest_tool
from dunebugger_updater.cli import main
from dunebugger_updater.manifest import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")}
    prefix = ["--config", str(config)] if config else []
    return subprocess.run([sys.executable, "-m", "dunebugger_updater.cli", *prefix, *args],
                          capture_output=True, text=True, env=environ, timeout=120)


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
    refused = cli("update", "core", "--json", config=device.config)
    assert refused.returncode == 1, refused.stderr
    body = json.loads(refused.stdout)["body"]
    assert (body["success"], body["outcome"]) == (False, "refused")
    assert "aliases are not allowed" in body["message"]

    device.github.reset()
    publish_raw(device, "v0.9.0")
    downgrade = cli("update", "core", "--json", config=device.config)
    assert downgrade.returncode == 1
    assert "never goes back" in json.loads(downgrade.stdout)["body"]["message"]
    before.assert_unchanged()

    history = json.loads(cli("history", "--json", "--limit", "2", config=device.config).stdout)["body"]["entries"]
    assert [entry["outcome"] for entry in history] == ["refused", "refused"]
