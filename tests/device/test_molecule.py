"""Run every molecule scenario under molecule/ end to end (create … verify, destroy).

Each scenario is one test, so a new scenario directory joins CI by existing.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = sorted(p.parent.name for p in (REPO / "molecule").glob("*/molecule.yml"))


# molecule/container/molecule.yml reads the host side of each engine mount from these.
MOUNT_VARIABLES = {
    "/var/run/docker.sock": "DUNEBUGGER_DOCKER_SOCKET",
    "/usr/local/bin/docker": "DUNEBUGGER_DOCKER_CLIENT",
    "/usr/local/lib/docker/cli-plugins/docker-compose": "DUNEBUGGER_COMPOSE_V2",
}


def test_both_update_scenarios_exist():
    assert {"core", "container"} <= set(SCENARIOS), SCENARIOS


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_molecule_scenario(docker_env, registry, engine_paths, scenario):
    venv_bin = str(Path(sys.executable).parent)  # molecule shells out to ansible-*
    env = {"PATH": f"{venv_bin}:{docker_env.env['PATH']}", "PY_COLORS": "0",
           "ANSIBLE_FORCE_COLOR": "0", "NO_COLOR": "1",
           **{MOUNT_VARIABLES[target]: source for target, source in engine_paths.items()}}
    proc = docker_env.run(f"{venv_bin}/molecule", "test", "-s", scenario,
                          check=False, timeout=900, cwd=REPO, env=env)
    tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
    assert proc.returncode == 0, f"molecule test -s {scenario} failed:\n{tail}"
