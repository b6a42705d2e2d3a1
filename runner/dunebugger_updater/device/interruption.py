"""A stop asked for (Ctrl-C, SIGTERM, a closed terminal) while a playbook changes the device.

Cutting a run off between the switch and its verification would leave the device between
two releases, and its playbook running on without the lock. So a command's signal
handler asks here first: while a run of this process is under way, the stop is only
noted; the run ends on its own (at the latest at its deadline), its result is reported,
and no further update starts after it. With no run under way the stop happens at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

_lock = threading.Lock()
_runs_under_way = 0
_stop_signal: int | None = None


@contextmanager
def playbook_under_way() -> Iterator[None]:
    global _runs_under_way
    with _lock:
        _runs_under_way += 1
    try:
        yield
    finally:
        with _lock:
            _runs_under_way -= 1


def request_stop(signal_number: int) -> bool:
    """Note a stop (the first signal counts); True when a run is under way and the
    caller must let it end. Called from a signal handler: takes no lock."""
    global _stop_signal
    if _stop_signal is None:
        _stop_signal = signal_number
    return _runs_under_way > 0


def stop_requested() -> int | None:
    """The signal of the first stop asked for since forget_stop(), else None."""
    return _stop_signal


def forget_stop() -> None:
    global _stop_signal
    _stop_signal = None
