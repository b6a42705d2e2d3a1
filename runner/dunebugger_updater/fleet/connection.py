"""How fleet runs reach their devices: the ANSIBLE_* settings every fleet run gets
(a host's own ansible_* variables still win), and the opt-in Mitogen strategy."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import ConfigError

SSH_SETTINGS = {
    # ansible-runner alone turns host key checking off: a device must be the one its
    # known_hosts entry names, or an impostor gets the run (and any become password).
    "ANSIBLE_HOST_KEY_CHECKING": "True",
    "ANSIBLE_PIPELINING": "True",  # a task is one SSH round trip, not three
    # A device's master connection outlives the wait between the versions pass and its batch.
    "ANSIBLE_SSH_ARGS": "-C -o ControlMaster=auto -o ControlPersist=300s",
}


def ansible_settings(strategy: str) -> dict[str, str]:
    """The ANSIBLE_* variables of fleet runs with `fleetStrategy` = strategy."""
    if strategy == "linear":
        return dict(SSH_SETTINGS)
    mitogen = importlib.util.find_spec("ansible_mitogen")
    if mitogen is None or not mitogen.submodule_search_locations:
        raise ConfigError(f"fleetStrategy = {strategy} needs the mitogen package (pip install mitogen)")
    plugins = Path(mitogen.submodule_search_locations[0]) / "plugins" / "strategy"
    return {**SSH_SETTINGS, "ANSIBLE_STRATEGY_PLUGINS": str(plugins), "ANSIBLE_STRATEGY": strategy}
