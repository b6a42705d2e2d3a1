"""The `dunebugger-updater` command (see commands.py).

This module stays light: the commands, and everything they import, are loaded inside
`main()`, so that Ctrl-C at any moment, an import included, ends with one line and
exit status 130, never a traceback. Ctrl-C, SIGTERM or a closed terminal while a
playbook changes the device waits for that run to end first (cli/stops.py).
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
        from .stops import exit_status

        try:
            print("dunebugger-updater: interrupted", file=sys.stderr)
        except OSError:
            pass  # the terminal is gone (SIGHUP)
        return exit_status() or EXIT_INTERRUPTED
    except OSError:
        from .stops import exit_status

        if exit_status() is None:
            raise
        return exit_status() or EXIT_INTERRUPTED  # the result could not be shown: the terminal is gone


def build_parser() -> argparse.ArgumentParser:
    from .commands import build_parser as build

    return build()


__all__ = ["build_parser", "main"]
