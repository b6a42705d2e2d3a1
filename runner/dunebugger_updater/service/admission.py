"""Who gets a file handle: bounds on the connections that have not authenticated yet,
and a log that a flood of refusals cannot flood.

A connection is *waiting* from its TCP accept until it is authenticated (or, when no
token is needed, until its WebSocket handshake is done). At most `waiting` connections
wait at once, the oldest is closed to make room for a newcomer, and each has
`seconds` from its accept to authenticate. So silent or slow clients hold a bounded
number of file handles, well below the process's limit, and an operator who
authenticates promptly is always served. The limit on open files is raised to its
hard maximum when the service starts.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

Clock = Callable[[], float]


@dataclass(frozen=True)
class ConnectionLimits:
    waiting: int = 100  # connections that may wait for authentication at once
    seconds: float = 10.0  # from TCP accept to authenticated: handshake and first message
    share_of_files: int = 4  # waiting connections take at most 1/share of the open-file limit
    log_interval: float = 60.0  # seconds summed up by one line of repeated refusals

    def waiting_within(self, open_files: int) -> int:
        """The cap on waiting connections that leaves most file handles for everything else."""
        return max(1, min(self.waiting, open_files // self.share_of_files))


def raise_open_file_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard one; the soft limit now in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the open-file limit from %d to %d: %s", soft, hard, exc)
    return soft


class RefusalLog:
    """One line per kind of refusal and interval instead of one per connection: the
    first refusal of a kind is logged as it happens, with its detail; the others of
    the interval are counted and told in one summary line when it ends."""

    def __init__(self, interval: float, logger: logging.Logger = log) -> None:
        self._interval = interval
        self._log = logger
        self._counts: Counter[str] = Counter()
        self._summary: asyncio.TimerHandle | None = None

    def refused(self, kind: str, detail: str = "") -> None:
        self._counts[kind] += 1
        if self._counts[kind] == 1:
            self._log.warning("refused a connection: %s%s", kind, f" ({detail})" if detail else "")
        if self._summary is None:
            self._summary = asyncio.get_running_loop().call_later(self._interval, self.flush)

    def flush(self) -> None:
        """Tell what was counted and not logged yet; start a new interval."""
        unlogged = {kind: count - 1 for kind, count in self._counts.items() if count > 1}
        if unlogged:
            parts = ", ".join(f"{count} {kind}" for kind, count in sorted(unlogged.items(), key=lambda item: -item[1]))
            self._log.warning(
                "refused %d more connections in the last %.0f s: %s", sum(unlogged.values()), self._interval, parts
            )
        self._counts.clear()
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None


class Admission:
    """The waiting connections, oldest first; `close` ends one at once (frees its handle)."""

    def __init__(self, cap: int, seconds: float, refusals: RefusalLog, clock: Clock = time.monotonic) -> None:
        self.cap = cap
        self._seconds = seconds
        self._refusals = refusals
        self._clock = clock
        self._waiting: OrderedDict[object, tuple[float, Callable[[], None]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def arrived(self, connection: object, close: Callable[[], None]) -> None:
        self._waiting[connection] = (self._clock(), close)
        while len(self._waiting) > self.cap:
            _, (_, close_oldest) = self._waiting.popitem(last=False)
            self._refusals.refused(
                "closed to make room for newer connections", f"more than {self.cap} waiting to authenticate"
            )
            close_oldest()

    def settled(self, connection: object) -> None:
        """Authenticated (or answered and done): no longer counted, no longer timed."""
        self._waiting.pop(connection, None)

    def refused(self, connection: object, kind: str, detail: str = "") -> None:
        if self._waiting.pop(connection, None) is not None:
            self._refusals.refused(kind, detail)

    def left(self, connection: object) -> None:
        """The connection is gone; if it was still waiting, it gave up or ran out of time."""
        self.refused(connection, f"did not authenticate within {self._seconds:g} s")

    def time_left(self, connection: object) -> float:
        """Seconds this connection still has to authenticate (none when it is not waiting)."""
        if connection not in self._waiting:
            return 0.0
        arrived, _ = self._waiting[connection]
        return self._seconds - (self._clock() - arrived)
