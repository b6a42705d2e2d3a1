"""Notifications to people through apprise URLs (`notifyUrls`): e-mail, Slack, Discord,
generic webhooks, and everything else apprise knows.

Each delivery runs in a short-lived child process (`python -m dunebugger_updater.service.notify`)
that reads one JSON job on stdin. That keeps apprise and its dependencies out of the
long-running service (memory on a Pi), puts a hard time limit on a hung mail server,
and keeps the URLs, which carry passwords, out of argv. A delivery that fails is logged
and forgotten: nothing ever waits for it, least of all an update.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from ..environment import child_environment
from ..results import Outcome, UpdateResult

log = logging.getLogger(__name__)

# apprise notify types
INFO, SUCCESS, WARNING, FAILURE = "info", "success", "warning", "failure"


class Notifier:
    def __init__(
        self, urls: Sequence[str], *, device: str = "DuneBugger", timeout: float = 60.0, python: str = sys.executable
    ) -> None:
        self._urls = tuple(urls)
        self._device = device
        self._timeout = timeout
        self._python = python
        self._pending: set[asyncio.Task[bool]] = set()

    @property
    def enabled(self) -> bool:
        return bool(self._urls)

    def new_version(self, component: str, current: str | None, latest: str, notes: str | None) -> None:
        body = f"{component} {latest} is available (running {current or 'nothing'})."
        if notes:
            body += f"\n\nRelease notes:\n{notes.strip()[:2000]}"
        self.send(f"{self._device}: {component} {latest} available", body, INFO)

    def update_finished(self, result: UpdateResult, *, automatic: bool = False) -> None:
        """Tell people how an update or rollback ended (dry runs and no-ops are not news)."""
        title_and_type = _headline(result, automatic)
        if title_and_type is None:
            return
        title, kind = title_and_type
        how = "automatic update" if automatic else "requested by an operator"
        self.send(f"{self._device}: {title}", f"{result.message}\n\n({how}; run {result.run_id or '-'})", kind)

    def send(self, title: str, body: str, kind: str = INFO) -> None:
        """Start a delivery in the background; returns at once."""
        if not self._urls:
            return
        task = asyncio.get_running_loop().create_task(self.deliver(title, body, kind))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def deliver(self, title: str, body: str, kind: str = INFO) -> bool:
        """Deliver one notification to every URL; False (and a log line) when any failed."""
        job = json.dumps({"urls": self._urls, "title": title, "body": body, "type": kind}).encode()
        try:
            child = await asyncio.create_subprocess_exec(
                self._python,
                "-m",
                "dunebugger_updater.service.notify",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=child_environment(),
            )
        except OSError as exc:
            log.warning("notification %r not sent: cannot start the sender: %s", title, exc)
            return False
        try:
            _, errors = await asyncio.wait_for(child.communicate(job), self._timeout)
        except TimeoutError:
            child.kill()
            await child.wait()
            log.warning("notification %r not sent: no answer within %.0f s", title, self._timeout)
            return False
        if child.returncode != 0:
            reason = errors.decode(errors="replace").strip().splitlines()
            log.warning(
                "notification %r not delivered: %s", title, reason[-1] if reason else f"exit {child.returncode}"
            )
            return False
        log.info("notification %r delivered", title)
        return True

    async def drain(self) -> None:
        """Wait for deliveries in flight (at shutdown, and in tests)."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


def _headline(result: UpdateResult, automatic: bool) -> tuple[str, str] | None:
    name = result.component
    if result.outcome == Outcome.UPDATED:
        return f"{name} updated to {result.to_version}", SUCCESS
    if result.outcome == "rolled_back" and not result.success:  # an update that failed and was undone
        return f"{name} update to {result.to_version} failed and was rolled back", WARNING
    if result.outcome == "rolled_back":  # a rollback someone asked for
        return f"{name} rolled back to {result.to_version}", INFO
    if result.outcome == Outcome.RECOVERED:
        return f"{name} recovered after an interrupted run", WARNING
    if result.outcome == Outcome.FAILED:
        return f"{name} update failed", FAILURE
    if result.outcome == Outcome.REFUSED and automatic:
        return f"{name} automatic update refused", WARNING
    return None  # dry_run, up_to_date, busy, refused by a person who saw the answer


# --- the child process ----------------------------------------------------------------


def _deliver_job(job: dict[str, Any]) -> list[str]:
    """Send the job through apprise; the problems found (empty: all delivered)."""
    import apprise  # only ever imported here, in the short-lived child

    problems = []
    sender = apprise.Apprise()
    for number, url in enumerate(job["urls"], start=1):
        if not sender.add(url):
            problems.append(f"notifyUrls entry {number} is not a URL apprise understands")
    if len(sender) and not sender.notify(title=job["title"], body=job["body"], notify_type=job.get("type", INFO)):
        problems.append("at least one service refused or could not be reached (see the log above)")
    return problems


def main() -> int:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        job = json.load(sys.stdin)
        problems = _deliver_job(job)
    except (ValueError, KeyError, TypeError) as exc:
        print(f"bad notification job: {exc}", file=sys.stderr)
        return 2
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
