"""Every module the roles ship documents itself for `ansible-doc`: what it does, every
option, examples, and the values it returns (the interface the tasks read)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(ROOT.glob("roles/*/library/*.py"))
ANSIBLE_DOC = Path(sys.executable).with_name("ansible-doc")


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.stem)
def test_ansible_doc_renders_the_module_with_examples_and_return_values(module):
    done = subprocess.run([str(ANSIBLE_DOC), "--json", "-M", str(module.parent), module.stem],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    entry = json.loads(done.stdout)[module.stem]
    doc = entry["doc"]
    assert doc["short_description"] and doc["description"]
    assert all(option.get("description") for option in (doc.get("options") or {}).values()), doc.get("options")
    assert entry["examples"].strip(), "no EXAMPLES"
    assert entry["return"], "no RETURN"
    assert all(value.get("description") for value in entry["return"].values())


def test_every_module_is_found():
    assert {path.stem for path in MODULES} >= {
        "core_release_info", "core_switch", "core_verify", "core_stage", "core_remove",
        "health_endpoint", "release_checks", "container_state", "compose_service_image",
        "installed_versions"}


DEVICE_PYTHON = (3, 9)  # the oldest Python the modules run under on a device (docs/core-playbooks.md)


@pytest.mark.parametrize(
    "source", [*MODULES, *ROOT.glob("roles/*/module_utils/*.py")], ids=lambda path: f"{path.parent.parent.name}/{path.stem}"
)
def test_modules_are_written_for_the_oldest_device_python(source):
    import ast

    ast.parse(source.read_text(), filename=str(source), feature_version=DEVICE_PYTHON)
