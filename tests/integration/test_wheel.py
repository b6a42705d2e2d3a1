"""An installed wheel carries its playbooks, roles and inventory: `pip install .` alone
must give a working updater, without the source tree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = """
import dunebugger_updater.device.playbooks as p
from dunebugger_updater.release.manifest import schema
print(p.CONTENT_DIR)
for name in ("update_core", "rollback_core", "update_container", "rollback_container"):
    assert p.playbook_path(name).is_file(), name
assert (p.ROLES_DIR / "core_update" / "library" / "core_stage.py").is_file()
assert (p.ROLES_DIR / "core_update" / "action_plugins" / "core_stage.py").is_file()
assert p.LOCAL_INVENTORY.is_file()
assert schema()["title"]
"""


def test_wheel_installs_the_ansible_content(tmp_path):
    wheels, target = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = wheels.glob("dunebugger_updater-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)

    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=60,
                           env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, cwd=tmp_path)

    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(target), "the content must come from the installed wheel"

    syntax = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "--syntax-check",
         "-i", str(target / "dunebugger_updater/inventory/localhost.yml"),
         str(target / "dunebugger_updater/playbooks/update_core.yml")],
        capture_output=True, text=True, timeout=120,
        env={"ANSIBLE_ROLES_PATH": str(target / "dunebugger_updater/roles"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
        cwd=tmp_path,
    )
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
