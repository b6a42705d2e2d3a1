from datetime import datetime, time

import pytest

from dunebugger_updater.service.policy import AnyTime, UpdateWindow, allows, parse_window


@pytest.mark.parametrize(("level", "current", "latest", "expected"), [
    ("off", "1.0.0", "1.0.1", False),
    ("patch", "1.2.3", "1.2.9", True),
    ("patch", "1.2.3", "1.3.0", False),
    ("patch", "1.2.3", "2.0.0", False),
    ("minor", "1.2.3", "1.2.4", True),
    ("minor", "1.2.3", "1.9.0", True),
    ("minor", "1.2.3", "2.0.0", False),
    ("all", "1.2.3", "7.0.0", True),
    ("all", "1.2.3", "1.2.3", False),      # same version: nothing to do
    ("all", "1.2.3", "1.2.2", False),      # never backwards
    ("patch", "1.2.3-beta", "1.2.3", True),  # prerelease to its release
    ("all", None, "1.0.0", False),         # nothing installed: a person installs it
    ("all", "garbage!", "1.0.0", False),
])
def test_levels(level, current, latest, expected):
    assert allows(level, current, latest) is expected


def test_unknown_level_is_an_error():
    with pytest.raises(ValueError, match="unknown autoUpdate level 'sometimes'"):
        allows("sometimes", "1.0.0", "1.0.1")


def at(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, 10, hour, minute)


def test_window_during_the_night():
    window = parse_window("02:00-05:00")
    assert window == UpdateWindow(time(2), time(5))
    assert [window.contains(at(h, m)) for h, m in [(1, 59), (2, 0), (4, 59), (5, 0), (12, 0)]] == [
        False, True, True, False, False]


def test_window_over_midnight():
    window = parse_window("22:30-03:00")
    assert [window.contains(at(h, m)) for h, m in [(22, 29), (22, 30), (23, 59), (0, 0), (2, 59), (3, 0), (12, 0)]] == [
        False, True, True, True, True, False, False]


def test_next_opening():
    window = parse_window("02:00-05:00")
    assert window.next_opening(at(1, 0)) == at(2, 0)
    assert window.next_opening(at(3, 0)) == at(3, 0)  # open now
    assert window.next_opening(at(6, 0)) == datetime(2026, 3, 11, 2, 0)
    late = parse_window("23:00-01:00")
    assert late.next_opening(at(0, 30)) == at(0, 30)
    assert late.next_opening(at(1, 0)) == at(23, 0)


def test_empty_window_means_any_time():
    window = parse_window("  ")
    assert isinstance(window, AnyTime) and window.contains(at(13)) and window.next_opening(at(13)) == at(13)


@pytest.mark.parametrize(("text", "reason"), [
    ("2-5", "must look like 02:00-05:00"),
    ("02:00", "must look like"),
    ("25:00-03:00", "outside 00:00..23:59"),
    ("02:60-03:00", "outside"),
    ("03:00-03:00", "same time"),
])
def test_bad_windows(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_window(text)
