"""dunebugger-updater: safe, Ansible-backed updates of DuneBugger components."""

from .config import ComponentSpec, Settings, load_settings
from .errors import UpdaterError
from .release.status import ComponentStatus
from .updater import ComponentUpdater

__all__ = [
    "ComponentSpec",
    "ComponentStatus",
    "ComponentUpdater",
    "Settings",
    "UpdaterError",
    "load_settings",
]
