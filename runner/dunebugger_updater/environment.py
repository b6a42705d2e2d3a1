"""The environment every child process of the updater gets.

The updater may hold secrets in its own environment (`GITHUB_TOKEN`, `UPDATER_*`), so
a child never inherits it: it gets the few variables below that tools need, when they
are set, and a PATH. This matters beyond the child itself: ansible-runner writes the
environment of `ansible-playbook` into each run's `command` artifact under statePath,
and the app and migration script that a playbook starts inherit it in turn.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Locale, home and temp dir, time zone, and where the container engine and an SSH agent
# are. Proxy settings are not among them (they may carry a password): pip reads its own
# from pip.conf, the container engine from its daemon configuration.
INHERITED_VARIABLES = (
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "DOCKER_HOST",
    "DOCKER_CONFIG",
    "DOCKER_CERT_PATH",
    "DOCKER_TLS_VERIFY",
    "SSH_AUTH_SOCK",
)


def child_environment() -> dict[str, str]:
    """The inherited variables, and a PATH that starts with our interpreter's bin
    directory (so a venv install needs no activated PATH)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    inherited = {name: os.environ[name] for name in INHERITED_VARIABLES if name in os.environ}
    return {**inherited, "PATH": path}
