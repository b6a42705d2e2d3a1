"""The oldest ansible-core the project declares (pyproject: ansible-core>=2.17) runs the
core playbooks: an update, an unhealthy release rolled back, a rollback. ci/setup.sh
installs it beside the suite's own Ansible."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from support.core_sandbox import Sandbox, releases, start_sandbox, stop_sandbox

pytestmark = pytest.mark.integration

FLOOR = Path(os.environ.get("DUNEBUGGER_ANSIBLE_FLOOR", "/var/tmp/dunebugger-ci/ansible-floor/bin/ansible-playbook"))
FLOOR_SERIES = "2.17"


@pytest.fixture
def sandbox(tmp_path):
    if not FLOOR.exists():
        pytest.fail(f"{FLOOR} is missing: run `bash ci/setup.sh` (it installs ansible-core {FLOOR_SERIES})")
    box = start_sandbox(tmp_path)
    box.ansible_playbook = FLOOR
    yield box
    stop_sandbox(box)


def serving(box: Sandbox) -> str:
    status, body = box.health()
    assert status == 200, box.log()
    return body["version"]


def test_the_oldest_supported_ansible_core_runs_the_core_playbooks(sandbox):
    version = subprocess.run([str(FLOOR), "--version"], capture_output=True, text=True, check=True).stdout
    assert f"[core {FLOOR_SERIES}." in version.splitlines()[0], version

    good = sandbox.update("1.1.0", releases.build_release(sandbox.dist, "1.1.0"))
    assert good.rc == 0, good.output
    assert serving(sandbox) == "1.1.0"

    bad = sandbox.update("1.2.0", releases.build_release(sandbox.dist, "1.2.0", health="fail"))
    assert bad.rc != 0 and "Rolled back to 1.1.0" in bad.output, bad.output
    assert serving(sandbox) == "1.1.0"

    back = sandbox.rollback(core_rollback_version="1.0.0")
    assert back.rc == 0, back.output
    assert serving(sandbox) == "1.0.0"
