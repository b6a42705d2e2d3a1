"""Defence in depth: even if a hostile string got past every check in Python, the
playbooks receive it `!unsafe` and Ansible never templates it."""

from __future__ import annotations

import pytest

from dunebugger_updater.device.events import last_failure
from dunebugger_updater.device.playbooks import PlaybookRunner
from support.attack_kit import template_payloads

pytestmark = pytest.mark.integration


def test_payloads_in_extra_vars_are_never_evaluated(tmp_path, marker):
    payload = template_payloads(marker)["lookup"]
    values = {
        "dunebugger_version": payload,  # preflight quotes it back in its failure message
        "core_install_path": f"/nonexistent/{payload}",
        "core_archive": payload,
        "core_archive_sha256": payload,
        "core_service_name": payload,
        "core_health_url": f"http://localhost/{payload}",
        "core_migration_script": template_payloads(marker)["statement"],
        "core_pip_extra_args": [payload],
    }
    run = PlaybookRunner(tmp_path / "runs").run("update_core", values, run_id="security-data-only")
    assert not run.succeeded
    failure = last_failure(run.events)
    assert failure is not None and "invalid core update inputs" in failure.message
    assert "lookup('pipe'" in failure.message  # the payload came back as text
    assert not marker.exists()
