"""The demo and the sandbox device it (and the tests) stand on.

The public names are imported when first used: the sandbox's service manager
(`demo.sandbox.appctl`, run for every start, stop and status of the sandbox app) loads
this package first and should not pay for httpx and the demo on each call.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .device import CORE_REPO, DemoDevice, free_port
    from .story import run_demo

_HOMES = {"CORE_REPO": ".device", "DemoDevice": ".device", "free_port": ".device", "run_demo": ".story"}

__all__ = ["CORE_REPO", "DemoDevice", "free_port", "run_demo"]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_HOMES[name], __name__), name)
