"""When the service may update on its own: the `autoUpdate` level and the `updateWindow`.

    autoUpdate = off     never (the default)
               = patch   1.2.3 -> 1.2.9, not 1.3.0
               = minor   1.2.3 -> 1.9.0, not 2.0.0
               = all     any newer release

    updateWindow = 02:00-05:00   local time; 22:00-03:00 runs over midnight;
                                 empty means any time

Pure functions of their arguments (no clock of their own), so the scheduler and the
tests decide what "now" is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from ..versions import NotAVersion, parse_version

LEVELS = ("off", "patch", "minor", "all")
_WINDOW = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def allows(level: str, current: str | None, latest: str | None) -> bool:
    """Whether `level` lets the service move from `current` to `latest` by itself."""
    if level not in LEVELS:
        raise ValueError(f"unknown autoUpdate level {level!r} (known: {', '.join(LEVELS)})")
    if level == "off" or current is None or latest is None:
        return False
    try:
        old, new = parse_version(current), parse_version(latest)
    except NotAVersion:
        return False
    if new <= old:
        return False
    if level == "all":
        return True
    if level == "minor":
        return new.major == old.major
    return (new.major, new.minor) == (old.major, old.minor)


@dataclass(frozen=True)
class UpdateWindow:
    """A daily span of local time; `start > end` means it runs over midnight."""

    start: time
    end: time

    def contains(self, moment: datetime) -> bool:
        now = moment.time().replace(tzinfo=None)
        if self.start < self.end:
            return self.start <= now < self.end
        return now >= self.start or now < self.end

    def next_opening(self, moment: datetime) -> datetime:
        """`moment` itself when the window is open, else the next time it opens."""
        if self.contains(moment):
            return moment
        opening = moment.replace(hour=self.start.hour, minute=self.start.minute, second=0, microsecond=0)
        return opening if opening > moment else opening + timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


class AnyTime:
    """No window configured: always open."""

    def contains(self, moment: datetime) -> bool:
        return True

    def next_opening(self, moment: datetime) -> datetime:
        return moment

    def __str__(self) -> str:
        return "any time"


def parse_window(text: str) -> UpdateWindow | AnyTime:
    """`HH:MM-HH:MM` (24-hour local time) or empty; ValueError names what is wrong."""
    text = text.strip()
    if not text:
        return AnyTime()
    match = _WINDOW.fullmatch(text)
    if not match:
        raise ValueError("must look like 02:00-05:00 (HH:MM-HH:MM, 24-hour local time) or be empty")
    start_h, start_m, end_h, end_m = (int(group) for group in match.groups())
    if start_h > 23 or end_h > 23 or start_m > 59 or end_m > 59:
        raise ValueError("has a time outside 00:00..23:59")
    start, end = time(start_h, start_m), time(end_h, end_m)
    if start == end:
        raise ValueError("starts and ends at the same time (leave it empty to allow any time)")
    return UpdateWindow(start, end)
