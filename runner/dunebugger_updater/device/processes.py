"""Processes of a playbook run: finding them, and ending every one of them.

Ansible's worker processes start sessions of their own, so ending the process group of
`ansible-playbook` (what ansible-runner does when it cancels a run) leaves the worker
and the module it runs alive. A run stopped at its deadline is ended as a tree instead:
frozen first, so that nothing forks away while we look, then killed. A service that a
run started and that detached itself (a daemon, a systemd unit) is no longer in the
tree and keeps running.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

PROC = Path("/proc")


def alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie does not)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process."""
    parents = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # ended while we looked
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def tree(root: int) -> list[int]:
    """`root` and all its descendants, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, parent in _parents().items():
        children.setdefault(parent, []).append(pid)
    found, queue = [], [root]
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, ()))
    return found


def children_running(parent: int, text: str) -> list[int]:
    """Direct children of `parent` whose command line contains `text`."""
    return [pid for pid, ppid in _parents().items() if ppid == parent and text.encode() in _command_line(pid)]


def running_with(text: str) -> list[int]:
    """Every process but this one whose command line contains `text`."""
    return [pid for pid in _parents() if pid != os.getpid() and text.encode() in _command_line(pid)]


def _command_line(pid: int) -> bytes:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return b""  # ended while we looked


def end_tree(root: int) -> list[int]:
    """SIGKILL `root` and every descendant; returns the pids that were signalled."""
    frozen: list[int] = []
    while True:
        fresh = [pid for pid in tree(root) if pid not in frozen and alive(pid)]
        if not fresh:
            break
        for pid in fresh:
            _signal(pid, signal.SIGSTOP)
        frozen.extend(fresh)
    for pid in frozen:
        _signal(pid, signal.SIGKILL)
    return frozen


def _signal(pid: int, number: signal.Signals) -> None:
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass
