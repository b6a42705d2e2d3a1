"""`dunebugger-updater fleet check|update|rollback`: the fleet verbs of the command line.

    fleet check    -i INVENTORY [--limit PATTERN] [--component core] [--json]
    fleet update   COMPONENT -i INVENTORY [--version V] [--batches 1,25%,100%] [--dry-run]
                   [--max-fail-percentage N] [--limit PATTERN] [--forks N] [--json]
    fleet rollback COMPONENT -i INVENTORY [--to V] [--limit PATTERN] [--forks N] [--json]

Exit status as everywhere: 0 every device updated (or already there) / rolled back /
answered / planned, 1 any device failed, was rolled back by an update, unreachable,
refused or not started, or another rollout holds the inventory (busy), 2 bad input (a
broken inventory included).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config import Settings
from .batches import (
    DEFAULT_BATCHES,
    DEFAULT_MAX_FAIL_PERCENTAGE,
    Rollout,
    check_max_fail_percentage,
    parse_batches,
)
from .rollout import FleetTarget, FleetUpdater
from .status import (
    FleetResult,
    check_table,
    fleet_check_message,
    fleet_result_message,
    result_table,
)

EXIT_OK, EXIT_FAILED = 0, 1


def add_parser(verbs: Any, common: Sequence[argparse.ArgumentParser]) -> None:
    fleet = verbs.add_parser("fleet", help="check, update or roll back many devices over an Ansible inventory")
    actions = fleet.add_subparsers(dest="fleet_verb", required=True, metavar="ACTION")

    target = argparse.ArgumentParser(add_help=False)
    target.add_argument(
        "-i",
        "--inventory",
        required=True,
        type=Path,
        metavar="INVENTORY",
        help="Ansible inventory of the devices (see inventory/fleet.example.yml)",
    )
    target.add_argument("--limit", metavar="PATTERN", help="Ansible host pattern, e.g. canary or 'production:!hall_b'")
    target.add_argument(
        "--forks", type=int, metavar="N", help="devices worked on in parallel (default: all of a batch, up to 50)"
    )

    check = actions.add_parser(
        "check", parents=[*common, target], help="installed version per device and the newest release"
    )
    check.add_argument("--component", default="core", help="component to report (default: core)")
    check.set_defaults(handler=run_fleet_check)

    batches = ",".join(map(str, DEFAULT_BATCHES))
    update = actions.add_parser(
        "update", parents=[*common, target], help="staged rollout of one release to every device"
    )
    update.add_argument("component")
    update.add_argument("--version", metavar="V", help="release to roll out (default: the newest)")
    update.add_argument(
        "--batches",
        default=batches,
        metavar="LIST",
        help=f"Ansible serial batches, first = canary (default: {batches.replace('%', '%%')})",
    )
    update.add_argument(
        "--max-fail-percentage",
        type=int,
        default=DEFAULT_MAX_FAIL_PERCENTAGE,
        metavar="N",
        help="failed share of a batch (%%) above which later batches are not started "
        f"(default: {DEFAULT_MAX_FAIL_PERCENTAGE}: any failure stops the rollout)",
    )
    update.add_argument(
        "--dry-run",
        action="store_true",
        help="resolve the release, read every device's version and print the batches; change nothing",
    )
    update.set_defaults(handler=run_fleet_update)

    rollback = actions.add_parser(
        "rollback", parents=[*common, target], help="every device back to its previous release"
    )
    rollback.add_argument("component")
    rollback.add_argument(
        "--to", metavar="V", help="a retained or backed-up version (default: each device's previous one)"
    )
    rollback.set_defaults(handler=run_fleet_rollback)


def run_fleet_check(args: argparse.Namespace, settings: Settings) -> int:
    target = FleetTarget(args.inventory, args.limit, args.forks)
    check = asyncio.run(FleetUpdater(settings).check(args.component, target))
    _emit(args, fleet_check_message(check), check_table(check))
    return EXIT_OK if check.success else EXIT_FAILED


def run_fleet_update(args: argparse.Namespace, settings: Settings) -> int:
    rollout = Rollout(parse_batches(args.batches), check_max_fail_percentage(args.max_fail_percentage))
    target = FleetTarget(args.inventory, args.limit, args.forks)
    result = asyncio.run(
        FleetUpdater(settings).update(
            args.component, target, version=args.version, rollout=rollout, dry_run=args.dry_run
        )
    )
    return _finish(args, result)


def run_fleet_rollback(args: argparse.Namespace, settings: Settings) -> int:
    target = FleetTarget(args.inventory, args.limit, args.forks)
    return _finish(args, asyncio.run(FleetUpdater(settings).rollback(args.component, target, to=args.to)))


def _finish(args: argparse.Namespace, result: FleetResult) -> int:
    _emit(args, fleet_result_message(result), result_table(result) if result.devices else result.message)
    return EXIT_OK if result.success else EXIT_FAILED


def _emit(args: argparse.Namespace, message: dict[str, Any], text: str) -> None:
    print(json.dumps(message, indent=2) if args.json else text, file=sys.stdout)
