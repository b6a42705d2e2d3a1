"""The `dunebugger-updater` command (see commands.py).

This module stays light: the commands, and everything they import, are loaded inside
`main()`, so that Ctrl-C at any moment, an import included, ends with one line and
exit status 130, never a traceback.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from .commands import main as run_command

        return run_command(argv)
    except KeyboardInterrupt:
        print("dunebugger-updater: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def build_parser() -> argparse.ArgumentParser:
    from .commands import build_parser as build

    return build()


__all__ = ["build_parser", "main"]
