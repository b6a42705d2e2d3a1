"""Connections waiting for authentication: a cap, oldest out first, a time budget, and
a refusal log that says one line per kind and interval."""

import logging
import resource

import pytest

from dunebugger_updater.service.admission import Admission, ConnectionLimits, RefusalLog, raise_open_file_limit


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def refusals() -> RefusalLog:
    return RefusalLog(60.0, logging.getLogger("test.admission"))


async def test_the_oldest_waiting_connection_makes_room(refusals):
    closed: list[str] = []
    admission = Admission(3, 10.0, refusals)
    for name in ("a", "b", "c", "d", "e"):
        admission.arrived(name, lambda name=name: closed.append(name))
    assert closed == ["a", "b"] and len(admission) == 3
    admission.settled("c")
    admission.arrived("f", lambda: closed.append("f"))
    assert closed == ["a", "b"], "a settled connection frees its place"


async def test_each_connection_has_its_own_time_budget(refusals):
    clock = Clock()
    admission = Admission(10, 10.0, refusals, clock)
    admission.arrived("early", lambda: None)
    clock.now += 4
    admission.arrived("late", lambda: None)
    assert (admission.time_left("early"), admission.time_left("late")) == (6.0, 10.0)
    admission.settled("late")
    assert admission.time_left("late") == 0.0


async def test_a_flood_of_refusals_is_one_line_per_kind_plus_a_summary(refusals, caplog):
    caplog.set_level(logging.WARNING, "test.admission")
    admission = Admission(2, 10.0, refusals)
    for n in range(500):
        admission.arrived(n, lambda: None)
    admission.left(498)
    admission.left(499)
    for _ in range(3):
        refusals.refused("foreign Origin", "'http://evil.example'")
    refusals.flush()
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "refused a connection: closed to make room for newer connections (more than 2 waiting to authenticate)",
        "refused a connection: did not authenticate within 10 s",
        "refused a connection: foreign Origin ('http://evil.example')",
        "refused 500 more connections in the last 60 s: 497 closed to make room for newer connections, "
        "2 foreign Origin, 1 did not authenticate within 10 s",
    ], lines


@pytest.mark.parametrize(("files", "cap"), [(1_048_576, 100), (1024, 100), (256, 64), (2, 1)])
def test_waiting_connections_take_a_small_share_of_the_open_files(files, cap):
    assert ConnectionLimits().waiting_within(files) == cap


def test_the_open_file_limit_is_raised_to_its_hard_maximum():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, 256), hard))
    try:
        assert raise_open_file_limit() == hard == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
