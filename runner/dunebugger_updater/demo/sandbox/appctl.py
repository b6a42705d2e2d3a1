"""A ``command`` service manager for a sandbox home directory.

``python -m dunebugger_updater.demo.sandbox.appctl --home DIR start|stop|status``

Layout of DIR: ``core`` (the installation, usually a symlink to a release),
``port`` (the TCP port to serve on), ``app.pid`` and ``app.log`` (written here).
``start`` runs ``DIR/core/.venv/bin/python DIR/core/app.py --port PORT`` fully
detached (new session, stdio to app.log) and returns at once, like a systemd
``Type=simple`` unit. ``status`` exits 0 only while that process is alive
(zombies and recycled pids do not count), 3 otherwise (LSB "not running").
``stop`` sends SIGTERM, waits, then SIGKILL.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

NOT_RUNNING = 3
STOP_GRACE_SECONDS = 10.0


def _read_pid(home: Path) -> int | None:
    try:
        return int((home / "app.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def _is_our_app(pid: int) -> bool:
    """True if pid is a live (not zombie) process running app.py."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X") and any(arg.endswith(b"app.py") for arg in cmdline)


def running_pid(home: Path) -> int | None:
    pid = _read_pid(home)
    return pid if pid is not None and _is_our_app(pid) else None


def start(home: Path) -> int:
    if running_pid(home) is not None:
        return 0
    core = home / "core"
    port = (home / "port").read_text().strip()
    argv = [str(core / ".venv" / "bin" / "python"), str(core / "app.py"), "--port", port]
    with open(home / "app.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            cwd=str(core),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    tmp = home / "app.pid.tmp"
    tmp.write_text(f"{proc.pid}\n")
    os.replace(tmp, home / "app.pid")
    return 0


def stop(home: Path) -> int:
    pid = running_pid(home)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while _is_our_app(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _is_our_app(pid):
            os.kill(pid, signal.SIGKILL)
            while _is_our_app(pid):
                time.sleep(0.05)
    (home / "app.pid").unlink(missing_ok=True)
    return 0


def status(home: Path) -> int:
    pid = running_pid(home)
    print(f"running pid {pid}" if pid else "not running")
    return 0 if pid else NOT_RUNNING


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Control the sandbox core app.")
    parser.add_argument("--home", required=True, type=Path)
    parser.add_argument("action", choices=("start", "stop", "status"))
    args = parser.parse_args(argv)
    action = {"start": start, "stop": stop, "status": status}[args.action]
    return action(args.home.resolve())


if __name__ == "__main__":
    sys.exit(main())
