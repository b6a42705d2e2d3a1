"""The shipped playbooks as AWX / Automation Controller run them: a plain
`ansible-runner run` over a private data directory (project/, inventory/, env/), with
the rollout's variables as extra-vars, over SSH hosts (docs/fleet.md, "Beyond one
controller")."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from support.fingerprint import sha256_file

REPO = Path(__file__).resolve().parents[2]


def test_a_rollout_from_a_plain_ansible_runner_private_data_dir(fleet, controller, tmp_path):
    archive = controller.publish("1.1.0")
    job = tmp_path / "job"
    for part in ("playbooks", "roles"):  # what a project sync checks out
        shutil.copytree(REPO / part, job / "project" / part)
    shutil.copy(REPO / "ansible.cfg", job / "project" / "ansible.cfg")
    (job / "inventory").mkdir()
    shutil.copy(fleet.inventory, job / "inventory" / "hosts.yml")
    (job / "env").mkdir()
    (job / "env" / "extravars").write_text(
        yaml.safe_dump(
            {
                "dunebugger_version": "1.1.0",
                "core_archive": str(archive),
                "core_archive_sha256": sha256_file(archive),
                "dunebugger_hosts": ["h1", "h2"],
                "dunebugger_batches": [1, 1],
                "dunebugger_max_fail_percentage": 0,
            }
        )
    )

    tools = Path(sys.executable).parent  # ansible-runner and ansible-playbook, as in an execution environment
    done = subprocess.run(
        [str(tools / "ansible-runner"), "run", str(job), "-p", "playbooks/update_core.yml", "--ident", "rollout"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ['PATH']}"},
    )

    artifacts = job / "artifacts" / "rollout"
    assert done.returncode == 0, (artifacts / "stdout").read_text()[-3000:]
    assert (artifacts / "status").read_text() == "successful"
    events = [json.loads(path.read_text()) for path in (artifacts / "job_events").glob("*.json")]
    assert sum(event["event"] == "playbook_on_play_start" for event in events) == 2, "two batches"
    stats = next(event["event_data"] for event in events if event["event"] == "playbook_on_stats")
    reports = stats["artifact_data"]["dunebugger_update_by_host"]
    assert {host: report["outcome"] for host, report in reports.items()} == {"h1": "updated", "h2": "updated"}
    assert [host.health() for host in fleet.hosts] == ["1.1.0", "1.1.0", "1.0.0", "1.0.0"]
