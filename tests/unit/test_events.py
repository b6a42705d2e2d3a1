"""Progress read from ansible-runner events: the phases a person sees."""

from __future__ import annotations

from dunebugger_updater.device.core_procedure import ROLLBACK_STEPS, UPDATE_STEPS
from dunebugger_updater.device.events import MAX_TEXT_CHARS, STATS_KEY, RunnerEvent, host_reports, parse_event, progress


def task(role: str | None, task_file: str = "main", name: str = "a task") -> RunnerEvent:
    path = f"/content/roles/{role}/tasks/{task_file}.yml:3" if role else "/content/playbooks/update_core.yml:40"
    return RunnerEvent(kind="playbook_on_task_start", counter=1, role=role, task=name, task_path=path)


def phases(events: list[RunnerEvent], steps: tuple[str, ...]) -> list[tuple[str, int]]:
    seen, last = [], None
    for event in events:
        last = progress(event, steps, last) or last
        seen.append((last.step, last.done))
    return seen


def test_an_update_shows_its_five_phases():
    events = [task("preflight"), task("core_update", "stage"), task("core_update", "switch"),
              task("postflight"), task("core_update", "finalize"), task("core_common", "report")]
    assert phases(events, UPDATE_STEPS) == [("preflight", 0), ("stage", 1), ("switch", 2), ("postflight", 3),
                                            ("finalize", 4), ("finalize", 4)]


def test_a_rollback_inside_an_update_is_its_own_phase_to_the_end():
    events = [task("preflight"), task("core_update", "stage"), task("core_update", "switch"),
              task("postflight", name="Verify the running release"), task(None, name="Describe the failure"),
              task("core_rollback"), task("postflight", name="Verify the running release"),
              task("core_common", "report")]
    assert [step for step, _ in phases(events, UPDATE_STEPS)] == [
        "preflight", "stage", "switch", "postflight", "postflight", "rollback", "rollback", "rollback"]
    assert phases(events, UPDATE_STEPS)[-1] == ("rollback", 3), "where the update got to"


def test_a_rollback_run_counts_its_own_phases():
    events = [task("core_rollback"), task("postflight")]
    assert phases(events, ROLLBACK_STEPS) == [("rollback", 0), ("postflight", 1)]


def test_what_a_task_said_is_cut_where_it_enters():
    # A module may echo input of any size (a name from an archive) into its message.
    said = "refused release archive x.tar.gz: member '" + "a" * 1_000_000 + "' ..."
    failed = parse_event({"event": "runner_on_failed", "counter": 7, "event_data": {"res": {"msg": said}}})
    stats = parse_event({"event": "playbook_on_stats", "counter": 9, "event_data": {
        "processed": {"device": 1}, "failures": {"device": 1},
        "artifact_data": {STATS_KEY: {"device": {"outcome": "failed", "reason": said, "failed_task": said}}}}})

    report = host_reports([failed, stats])["device"]

    for text in (failed.message, report.reason, report.failed_task):
        assert text.startswith(said[:MAX_TEXT_CHARS]) and text.endswith(f"... ({len(said)} characters)")
        assert len(text) < MAX_TEXT_CHARS + 40
