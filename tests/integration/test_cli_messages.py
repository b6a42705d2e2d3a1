"""What a person at a terminal reads from the installed command: each problem once, in
one line; an error nobody foresaw as one line pointing at a log with the details."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("clean_env")

CONSOLE_SCRIPT = Path(sys.executable).parent / "dunebugger-updater"


def config(tmp_path: Path, state: Path | None = None) -> Path:
    path = tmp_path / "dunebugger.conf"
    path.write_text(f"[Updater]\ngithubApiUrl = http://127.0.0.1:9\nstatePath = {state or tmp_path / 'state'}\n"
                    f"coreInstallPath = {tmp_path / 'core'}\ndockerComposePath = {tmp_path / 'compose.yml'}\n")
    return path


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CONSOLE_SCRIPT), *argv], capture_output=True, text=True, timeout=120,
                          env={k: v for k, v in os.environ.items() if not k.startswith("UPDATER_")})


def test_a_failed_check_is_said_once_in_the_table_and_not_installed_is_shown(tmp_path):
    done = run("--config", str(config(tmp_path)), "check")
    assert done.returncode == 1
    assert done.stderr == "", "the table says it; no WARNING lines besides"
    rows = done.stdout.splitlines()[1:]
    assert len(rows) == 3 and all(row.count("check failed: cannot reach 127.0.0.1") == 1 for row in rows)
    assert f"not installed ({tmp_path / 'core' / 'VERSION'} is missing); check failed" in rows[0]


PLANTED_BUG = """
import sys
from dunebugger_updater.cli import commands

def broken(args, settings):
    raise RuntimeError("planted bug")

commands.run_history = broken  # the handler the parser will pick
sys.exit(commands.main(sys.argv[1:]))
"""


@pytest.mark.parametrize("usable_state", [True, False])
def test_an_unforeseen_error_is_one_line_and_the_traceback_is_in_a_log(tmp_path, usable_state):
    state = tmp_path / "state"
    if not usable_state:
        state.write_text("")  # then a private temp file takes the details
    done = subprocess.run([sys.executable, "-c", PLANTED_BUG, "--config", str(config(tmp_path, state)), "history"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    found = re.fullmatch(r"dunebugger-updater: internal error: RuntimeError: planted bug; details in (\S+)", line)
    assert found, line
    log = Path(found[1])
    if usable_state:
        assert log == state / "logs" / "errors.log"
    else:
        assert log.parent == tmp_path and log.name.startswith("dunebugger-updater-")
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: planted bug" in text
    assert "Traceback" not in done.stdout


def test_a_config_that_is_a_directory_or_lacks_its_section_says_how_to_fix_it(tmp_path):
    directory = run("--config", str(tmp_path), "versions")
    assert (directory.returncode, directory.stderr) == (2, (
        f"dunebugger-updater: configuration error: config file {tmp_path} is a directory: "
        f"name the INI file in it (e.g. {tmp_path / 'dunebugger.conf'})\n"))
    headless = tmp_path / "headless.conf"
    headless.write_text("statePath = /tmp/x\n")
    missing_section = run("--config", str(headless), "versions")
    assert (missing_section.returncode, missing_section.stderr) == (2, (
        f"dunebugger-updater: configuration error: {headless}: cannot parse: line 1: a key before any section: "
        "put [Updater] on the line above the keys\n"))


def test_a_port_in_use_is_one_line_with_the_fix(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run("--config", str(config(tmp_path)), "serve", "--port", str(port))
    assert (done.returncode, done.stderr) == (1, (
        f"dunebugger-updater: cannot serve on 127.0.0.1:{port}: address already in use: "
        "another program listens there; stop it or choose another --port (servePort)\n"))
