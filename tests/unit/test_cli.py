"""The command line's own logic: flags, what tables and messages show, where the
details of an unexpected error go, and what the demo leaves behind when it fails."""

from __future__ import annotations

import io
import logging
from importlib.metadata import version
from pathlib import Path

import pytest

from dunebugger_updater import messages, tables
from dunebugger_updater.cli import build_parser, main
from dunebugger_updater.cli.errorlog import ErrorLog, OneLineFormatter
from dunebugger_updater.demo import run_demo
from dunebugger_updater.errors import ConfigError
from dunebugger_updater.release.status import ComponentStatus
from dunebugger_updater.statedir import StateDir


def test_version_flag_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out == f"dunebugger-updater {version('dunebugger-updater')}\n"


@pytest.mark.parametrize("limit", ["0", "-3", "two", ""])
def test_history_limit_must_be_one_or_more(capsys, limit):
    with pytest.raises(SystemExit) as done:
        main(["history", "--limit", limit])
    assert done.value.code == 2
    assert f"argument --limit: {limit!r} is not a whole number of 1 or more" in capsys.readouterr().err


def test_history_limit_and_config_before_or_after_the_verb():
    parse = build_parser().parse_args
    assert parse(["history", "--limit", "2"]).limit == 2
    assert parse(["--config", "a.conf", "check"]).config == "a.conf"
    assert parse(["check", "--config", "b.conf"]).config == "b.conf"
    assert parse(["--config", "a.conf", "manifest", "validate", "m.yaml", "--config", "b.conf"]).config == "b.conf"
    assert parse(["check"]).config is None


def status(**fields: object) -> ComponentStatus:
    base: dict[str, object] = dict(name="core", current_version=None, latest_version=None, update_available=False)
    return ComponentStatus(**{**base, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(("fields", "state"), [
    (dict(detail="not installed (/opt/dunebugger/core/VERSION is missing)", error="cannot reach api.github.com"),
     "not installed (/opt/dunebugger/core/VERSION is missing); check failed: cannot reach api.github.com"),
    (dict(detail="not installed (/x/VERSION is missing)", latest_version="1.1.0"), "not installed (/x/VERSION is missing)"),
    (dict(current_version="1.0.0", latest_version="1.1.0", update_available=True), "update available"),
    (dict(current_version="1.1.0", latest_version="1.1.0"), "up to date"),
    (dict(current_version="1.1.0"), "not checked"),
    (dict(current_version="1.0.0", error="rate limit"), "check failed: rate limit"),
])
def test_the_status_table_says_what_is_installed_and_what_the_check_found(fields, state):
    table = tables.status_table({"core": status(**fields)})
    assert table.splitlines()[1].split("  ")[0] == "core"
    assert f"  {state}  " in table


@pytest.mark.parametrize(("available", "notes"), [(True, "### Fixes"), (False, None)])
def test_release_notes_only_with_an_update_to_read_them_about(available, notes):
    entry = messages.component_entry(status(current_version="1.0.0", latest_version="1.1.0" if available else "1.0.0",
                                            update_available=available, release_notes="### Fixes"))
    assert entry["release_notes"] == notes


def test_a_logged_exception_is_one_line_and_its_traceback_goes_to_the_error_log(tmp_path):
    errors = ErrorLog()
    errors.use_state_dir(StateDir(tmp_path / "state"))
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s", errors))
    logger = logging.getLogger("test_cli.one_line")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise RuntimeError("planted")
    except RuntimeError:
        logger.exception("update of %s failed unexpectedly", "core")
    log_file = tmp_path / "state" / "logs" / "errors.log"
    assert stream.getvalue() == ("ERROR test_cli.one_line: update of core failed unexpectedly: internal error: "
                                 f"RuntimeError: planted; details in {log_file}\n")
    assert "Traceback (most recent call last)" in log_file.read_text() and "planted" in log_file.read_text()


def test_the_error_log_falls_back_to_a_private_temp_file(tmp_path):
    (tmp_path / "state").write_text("")  # statePath unusable
    errors = ErrorLog()
    errors.use_state_dir(StateDir(tmp_path / "state"))
    try:
        raise ValueError("x")
    except ValueError as exc:
        where = errors.write("title", exc)
    assert where is not None and where.parent != tmp_path
    assert (where.stat().st_mode & 0o777) == 0o600 and "ValueError: x" in where.read_text()
    where.unlink()


def test_a_demo_that_goes_wrong_keeps_what_its_messages_point_at(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    out = io.StringIO()

    def failing(home: Path, say) -> bool:
        (home / "state" / "runs" / "r1").mkdir(parents=True)
        say(f"see {home / 'state' / 'runs' / 'r1'}")
        return False

    assert run_demo(out, scenario=failing) == 1
    (home,) = tmp_path.iterdir()
    assert (home / "state" / "runs" / "r1").is_dir()
    assert out.getvalue().splitlines()[-1] == f"The sandbox is kept for inspection in {home}; remove it with: rm -rf {home}"

    assert run_demo(io.StringIO(), scenario=lambda home, say: True) == 0
    assert list(tmp_path.iterdir()) == [home], "a demo that went well leaves nothing"


def test_the_demo_obeys_tmpdir_and_says_when_it_cannot_write_there(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=f"cannot create the demo's sandbox in {tmp_path / 'missing'}: "
                                          "no such file or directory: set TMPDIR to a directory you may write"):
        run_demo(io.StringIO(), scenario=lambda home, say: True)
