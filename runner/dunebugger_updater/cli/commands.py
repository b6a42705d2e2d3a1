"""The `dunebugger-updater` command.

Exit status: 0 done, 1 the operation failed, 2 bad input or configuration.
With `--json` stdout carries exactly one message (the same JSON the WebSocket API
sends) and nothing else; logs go to stderr.

A person never sees a traceback: every problem is one line on stderr naming what is
wrong and what to do; an error nobody foresaw is one line too, and its traceback goes
to statePath/logs/errors.log (or a temp file), whose path the line gives.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import re
import socket
import sys
from collections.abc import Callable, Sequence
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any, NoReturn

from .. import messages, tables
from ..bundle import cli as bundle_cli
from ..config import Settings, load_settings
from ..errors import BadRequest, Busy, ConfigError, UpdaterError, os_reason
from ..fleet import cli as fleet_cli
from ..release import manifest_tool
from ..release.local import LocalSource
from ..results import Outcome, UpdateResult
from ..statedir import StateDir
from ..updater import ComponentUpdater
from .errorlog import ErrorLog, OneLineFormatter, describe
from .progressbar import ProgressBar
from .stops import exit_status, stops_that_wait_for_the_device

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
CONFIG_HELP = "INI file (default: $DUNEBUGGER_CONFIG, else config/dunebugger.conf if present)"

log = logging.getLogger("dunebugger_updater")


class CommandLineParser(argparse.ArgumentParser):
    """argparse, except that a mistake is one line naming it and where the help is, not
    a page of usage (the verbs' parsers are of this class too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="dunebugger-updater", description="Safe updates of DuneBugger components.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version('dunebugger-updater')}")
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output on stderr")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    json_flag = CommandLineParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="print the result message as JSON, nothing else")
    # Also accepted after the verb; SUPPRESS keeps a --config given before it.
    config_flag = CommandLineParser(add_help=False)
    config_flag.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    device = [json_flag, config_flag]

    check = verbs.add_parser("check", parents=device, help="look up the newest releases")
    check.add_argument("--force", action="store_true", help="ask GitHub even if the last answer is recent")
    check.set_defaults(handler=run_check)

    versions = verbs.add_parser("versions", parents=device, help="installed versions and the last check's findings")
    versions.set_defaults(handler=run_versions)

    update = verbs.add_parser("update", parents=device, help="update a component (never to an older version)")
    update.add_argument("component")
    update.add_argument("--dry-run", action="store_true", help="download and verify, report the plan, change nothing")
    update.add_argument("--version", metavar="V", help="install this release instead of the newest")
    update.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="PATH",
        help="install the release in this file (release archive, `docker save` image archive) or bundle "
        "directory; no network",
    )
    update.add_argument("--sha256", type=_sha256, metavar="HEX", help="with --from: the sha256 the release published")
    update.add_argument(
        "--signature", type=Path, metavar="FILE", help="with --from: the archive's signature (default: PATH.sig)"
    )
    update.set_defaults(handler=run_update)

    rollback = verbs.add_parser("rollback", parents=device, help="go back to the previous or a retained version")
    rollback.add_argument("component")
    rollback.add_argument("--to", metavar="V", help="a retained or backed-up version (default: the previous one)")
    rollback.set_defaults(handler=run_rollback)

    recover = verbs.add_parser("recover", parents=device, help="settle an update that a crash cut off")
    recover.set_defaults(handler=run_recover)

    history = verbs.add_parser("history", parents=device, help="every update, rollback and recovery")
    history.add_argument("--limit", type=_at_least_one, metavar="N", help="only the newest N entries")
    history.set_defaults(handler=run_history)

    serve = verbs.add_parser(
        "serve", parents=[config_flag], help="run the WebSocket API, the operator page and the periodic checks"
    )
    serve.add_argument("--host", metavar="H", help="address to bind (default: serveHost, 127.0.0.1)")
    serve.add_argument("--port", metavar="P", type=_tcp_port, help="TCP port (default: servePort, 8765)")
    serve.set_defaults(handler=run_serve)

    fleet_cli.add_parser(verbs, device)
    bundle_cli.add_parser(verbs, config_flag)

    manifest = verbs.add_parser("manifest", help="validate or generate an update-manifest.yaml (release tooling)")
    manifest_tool.add_arguments(manifest, config_flag)

    demo = verbs.add_parser(
        "demo",
        help="show check, update and rollback on a sandbox device, offline; "
        "-v shows every task, --json what `--json` prints",
    )
    demo.add_argument("--json", action="store_true", help="show each command's JSON, as `--json` prints it")
    demo.set_defaults(handler=run_demo, needs_settings=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    errors = ErrorLog()
    _configure_logging(args.verbose, errors)
    try:
        return _run(args, errors)
    except Exception as exc:
        say(describe(exc, errors.write(f"dunebugger-updater {args.verb} failed unexpectedly", exc)))
        return EXIT_FAILED


def _run(args: argparse.Namespace, errors: ErrorLog) -> int:
    handler: Callable[[argparse.Namespace, Settings | None], int] = args.handler
    settings = None
    if getattr(args, "needs_settings", True):
        try:
            settings = load_settings(args.config)
        except ConfigError as exc:
            say(f"configuration error: {exc}")
            return EXIT_BAD_INPUT
        errors.use_state_dir(StateDir(settings.state_path))
    try:
        return handler(args, settings)
    except (ConfigError, BadRequest) as exc:
        say(str(exc))
        return EXIT_BAD_INPUT
    except UpdaterError as exc:
        say(str(exc))
        return EXIT_FAILED


def say(text: str) -> None:
    """One line on stderr, the way every problem reaches a person."""
    print(f"dunebugger-updater: {text}", file=sys.stderr)


def run_check(args: argparse.Namespace, settings: Settings) -> int:
    statuses = asyncio.run(ComponentUpdater(settings).check_updates(force=args.force))
    _emit(args, messages.check_result(statuses), tables.status_table(statuses))
    return EXIT_FAILED if any(status.error for status in statuses.values()) else EXIT_OK


def run_versions(args: argparse.Namespace, settings: Settings) -> int:
    statuses = ComponentUpdater(settings).get_all_versions()
    _emit(args, messages.versions_result(statuses), tables.status_table(statuses))
    return EXIT_OK


def run_update(args: argparse.Namespace, settings: Settings) -> int:
    source = _local_source(args)
    updater = _updater_with_progress(settings)
    result = _busy_or(
        args.component,
        lambda: updater.update_component(args.component, dry_run=args.dry_run, version=args.version, source=source),
        dry_run=args.dry_run,
    )
    status = _finish(args, result)
    # Refused from a file: the file, or what was typed with it, cannot be installed.
    return EXIT_BAD_INPUT if source and result.outcome == Outcome.REFUSED else status


def _local_source(args: argparse.Namespace) -> LocalSource | None:
    if args.source is None:
        if args.sha256 or args.signature:
            raise BadRequest("--sha256 and --signature go with --from PATH")
        return None
    return LocalSource(args.source, sha256=args.sha256, signature=args.signature)


def run_rollback(args: argparse.Namespace, settings: Settings) -> int:
    updater = _updater_with_progress(settings)
    result = _busy_or(args.component, lambda: updater.rollback_component(args.component, to=args.to))
    status = _finish(args, result)
    # Refused with --to: the version typed is not one this device keeps.
    return EXIT_BAD_INPUT if args.to and result.outcome == Outcome.REFUSED else status


def run_recover(args: argparse.Namespace, settings: Settings) -> int:
    with stops_that_wait_for_the_device():
        result = asyncio.run(_updater_with_progress(settings).recover())
    if result is None:
        result = UpdateResult("*", True, "nothing to recover: no update was cut off", Outcome.UP_TO_DATE)
    return _finish(args, result)


def run_history(args: argparse.Namespace, settings: Settings) -> int:
    entries = ComponentUpdater(settings).get_history(args.limit)
    rows = [
        (e.finished_at, e.component, e.action, e.from_version or "-", e.to_version or "-", e.outcome, e.run_id)
        for e in entries
    ]
    table = tables.render(("FINISHED", "COMPONENT", "ACTION", "FROM", "TO", "RESULT", "RUN"), rows)
    _emit(args, messages.history(entries), table)
    return EXIT_OK


def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses

    from ..service.security import AccessRules
    from ..service.server import serve_forever

    settings = dataclasses.replace(
        settings, serve_host=args.host or settings.serve_host, serve_port=args.port or settings.serve_port
    )
    # ConfigError: exit 2, nothing started
    AccessRules(settings.serve_host, settings.serve_port, settings.serve_token)
    StateDir(settings.state_path).ready()
    if not args.verbose:
        logging.getLogger("dunebugger_updater").setLevel(logging.INFO)  # a service's log is its journal
    try:
        return asyncio.run(serve_forever(settings))
    except OSError as exc:
        problem = _bind_problem(exc)
        if problem is None:
            raise
        say(f"cannot serve on {settings.serve_host}:{settings.serve_port}: {problem}")
        return EXIT_FAILED  # not 2: at boot the address or the port may come free, and systemd retries


BIND_FIXES = {
    errno.EADDRINUSE: "another program listens there; stop it or choose another --port (servePort)",
    errno.EACCES: "ports below 1024 need root; choose --port 1024 or above (servePort)",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address; choose another --host (serveHost)",
}


def _bind_problem(exc: OSError) -> str | None:
    """Why the listener could not start, and the fix; None for anything else."""
    if isinstance(exc, socket.gaierror):
        return f"{exc.strerror or exc}: --host (serveHost) must be an address or a name this machine resolves"
    fix = BIND_FIXES.get(exc.errno or 0)
    return f"{os_reason(exc)}: {fix}" if fix else None


def _at_least_one(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of 1 or more")
    return number


SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


def _sha256(text: str) -> str:
    digest = text.strip().lower().removeprefix("sha256:")
    if not SHA256_HEX.fullmatch(digest):
        raise argparse.ArgumentTypeError(f"{text!r} is not a sha256 (64 hexadecimal digits)")
    return digest


def _tcp_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = 0
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return port


def run_demo(args: argparse.Namespace, settings: None) -> int:
    from ..demo.story import run_demo as demo

    return demo(sys.stdout, json_output=args.json, verbose=args.verbose > 0)


def _updater_with_progress(settings: Settings) -> ComponentUpdater:
    updater = ComponentUpdater(settings)
    if sys.stderr.isatty():
        updater.add_listener(ProgressBar(sys.stderr))
    return updater


def _busy_or(component: str, operation: Callable[[], Any], dry_run: bool = False) -> UpdateResult:
    try:
        with stops_that_wait_for_the_device():
            return asyncio.run(operation())
    except Busy as exc:
        return UpdateResult.busy(component, str(exc), dry_run=dry_run)


def _finish(args: argparse.Namespace, result: UpdateResult) -> int:
    if sys.stderr.isatty():
        print(file=sys.stderr)  # end the progress bar's line
    _emit(args, messages.update_result(result), result.message)
    return exit_status() or (EXIT_OK if result.success else EXIT_FAILED)


def _emit(args: argparse.Namespace, message: dict[str, Any], text: str) -> None:
    if args.json:
        print(json.dumps(message, indent=2))
    else:
        print(text)


def _configure_logging(verbosity: int, errors: ErrorLog) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter("%(levelname)s %(name)s: %(message)s", errors))
    logging.basicConfig(level=logging.WARNING - 10 * min(verbosity, 2), handlers=[handler])
