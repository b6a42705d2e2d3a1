"""The demo and the sandbox device it (and the tests) stand on."""

from .device import CORE_REPO, DemoDevice, free_port
from .story import run_demo

__all__ = ["CORE_REPO", "DemoDevice", "free_port", "run_demo"]
