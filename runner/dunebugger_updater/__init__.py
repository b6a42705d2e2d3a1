"""dunebugger-updater: safe, Ansible-backed updates of DuneBugger components.

The public names are imported when first used, so that importing the package is
cheap: the command line starts its work (and its Ctrl-C handling) before httpx,
jsonschema and the rest are loaded.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ComponentSpec, Settings, load_settings
    from .errors import UpdaterError
    from .release.status import ComponentStatus
    from .updater import ComponentUpdater

_HOMES = {
    "ComponentSpec": ".config",
    "ComponentStatus": ".release.status",
    "ComponentUpdater": ".updater",
    "Settings": ".config",
    "UpdaterError": ".errors",
    "load_settings": ".config",
}

__all__ = [
    "ComponentSpec",
    "ComponentStatus",
    "ComponentUpdater",
    "Settings",
    "UpdaterError",
    "load_settings",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)
