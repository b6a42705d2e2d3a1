"""Ctrl-C, SIGTERM and a closed terminal (SIGHUP) for the command line.

With no playbook under way they stop the command at once (KeyboardInterrupt: one line,
exit 128 + the signal's number). While a playbook changes the device they are only
noted (device/interruption.py): the run ends on its own, at the latest at its deadline,
its result is printed, and the command then exits with 128 + the signal's number.
Killing the command with SIGKILL cannot be deferred: the next update or `recover` waits
for what the cut-off run left running.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from ..device import interruption

STOPS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def exit_status() -> int | None:
    """128 + the number of the signal that asked the command to stop, if one did."""
    number = interruption.stop_requested()
    return None if number is None else 128 + number


def _on_stop(number: int, frame: FrameType | None) -> None:
    if not interruption.request_stop(number):
        raise KeyboardInterrupt
    if interruption.stop_requested() == number:
        _tell(
            f"dunebugger-updater: {signal.Signals(number).name}: the playbook run under way ends first "
            "(at the latest at playbookTimeoutMinutes), then its result is shown and the command stops\n"
        )


def _tell(text: str) -> None:
    try:  # a plain write: print() may be in the middle of a line, and the terminal may be gone
        os.write(2, text.encode())
    except OSError:
        pass


@contextmanager
def stops_that_wait_for_the_device() -> Iterator[None]:
    """While the block runs (an update, a rollback, a recovery), a stop waits for the
    playbook run under way, if any."""
    interruption.forget_stop()
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may listen for signals
        return
    saved = {number: signal.signal(number, _on_stop) for number in STOPS}
    try:
        yield
    finally:
        for number, handler in saved.items():
            signal.signal(number, handler)
