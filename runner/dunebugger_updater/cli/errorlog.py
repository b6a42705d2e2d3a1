"""Where the details of an unexpected error go: a file, never a person's terminal.

The command line prints one line per problem; when something fails that we did not
foresee, the traceback is appended to statePath/logs/errors.log (or, when statePath is
not usable, to a private temp file) and the line says where. `OneLineFormatter` does
the same for log records that carry an exception.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError
from ..statedir import StateDir, open_no_follow

LOG_NAME = "errors.log"
MAX_LOG_BYTES = 1024 * 1024  # beyond this the log starts over: the newest errors matter


class ErrorLog:
    """Writes tracebacks to the first place that takes them, chosen at the first error."""

    def __init__(self) -> None:
        self._state: StateDir | None = None
        self._path: Path | None = None

    def use_state_dir(self, state: StateDir) -> None:
        self._state = state

    def write(self, title: str, exc: BaseException) -> Path | None:
        """Append `title` and the traceback; the file's path, or None when none took it."""
        text = "".join(traceback.format_exception(exc))
        entry = f"--- {time.strftime('%Y-%m-%dT%H:%M:%S')} {' '.join(sys.argv)}\n{title}\n{text}\n"
        for path in self._places():
            if _append(path, entry):
                self._path = path
                return path
        return None

    def _places(self) -> Iterator[Path]:
        """The file already in use; else statePath/logs; else a new private temp file."""
        if self._path is not None:
            yield self._path
        if self._state is not None:
            try:
                yield self._state.subdir("logs") / LOG_NAME
            except ConfigError:
                pass
        try:
            fd, name = tempfile.mkstemp(prefix="dunebugger-updater-", suffix=".log")  # 0600
        except OSError:
            return
        os.close(fd)
        yield Path(name)


def _append(path: Path, entry: str) -> bool:
    try:
        fd = open_no_follow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    except (OSError, ConfigError):
        return False
    try:
        if os.fstat(fd).st_size > MAX_LOG_BYTES:
            os.ftruncate(fd, 0)
        os.write(fd, entry.encode("utf-8", errors="replace"))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def describe(exc: BaseException, where: Path | None) -> str:
    """The one line a person reads about an error we did not foresee."""
    details = f"details in {where}" if where else "no log file could be written (statePath/logs, $TMPDIR)"
    return f"internal error: {type(exc).__name__}: {exc}; {details}"


class OneLineFormatter(logging.Formatter):
    """A log record with an exception becomes one line; its traceback goes to the error log."""

    def __init__(self, fmt: str, errors: ErrorLog) -> None:
        super().__init__(fmt)
        self._errors = errors

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            where = self._errors.write(record.getMessage(), exc)
            record = logging.makeLogRecord(
                {
                    **record.__dict__,
                    "exc_info": None,
                    "exc_text": None,
                    "args": None,
                    "msg": f"{record.getMessage()}: {describe(exc, where)}",
                }
            )
        return super().format(record)
