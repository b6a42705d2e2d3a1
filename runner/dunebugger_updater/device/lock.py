"""One update at a time per device (and one rollout at a time per fleet inventory): an
exclusive, non-blocking `flock` on a file under statePath. The kernel drops the lock
when its holder dies, so a crash never leaves the device locked; the file's text says
who holds it, for the "busy" message."""

from __future__ import annotations

import fcntl
import json
import os
import time
from types import TracebackType

from ..errors import Busy
from ..statedir import StateDir

LOCK_FILE = "update.lock"


class DeviceLock:
    def __init__(self, state: StateDir, name: str = LOCK_FILE, place: str = "on this device") -> None:
        self._state = state
        self._name = name
        self._place = place  # where the work it guards happens, for the "busy" message
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        fd = self._state.open(self._name, os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise Busy(f"busy: {holder} is in progress {self._place}; try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.write(
            fd, json.dumps({"what": what, "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}).encode()
        )
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock
            self._fd = None

    def __enter__(self) -> DeviceLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{info['what']} (pid {info['pid']}, since {info['since']})"
    except (ValueError, KeyError, TypeError, OSError):
        return "another update"
