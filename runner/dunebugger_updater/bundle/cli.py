"""`dunebugger-updater bundle create`: releases for devices without internet.

    bundle create --component NAME[=VERSION] [--component ...] [--version V] -o DIR

`--component` may repeat or list several (`core,scheduler=1.1.0`); a component without
a version gets its newest release, or `--version V` when it is the only one. Exit
status as everywhere: 0 written, 1 a release could not be obtained or verified (nothing
written), 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from .. import tables
from ..config import Settings
from ..errors import BadRequest
from ..release.bundle_index import INDEX_FILE
from ..versions import requested_version
from .maker import BundleMaker, Wanted

EXIT_OK = 0


def add_parser(verbs: Any, config_flag: argparse.ArgumentParser) -> None:
    bundle = verbs.add_parser("bundle", help="write releases to a directory, for devices without internet")
    actions = bundle.add_subparsers(dest="bundle_verb", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create", parents=[config_flag], help="download and verify releases into a bundle directory"
    )
    create.add_argument(
        "--component",
        action="append",
        required=True,
        metavar="NAME[=VERSION]",
        help="a component to bundle; repeat it or list several (core,scheduler=1.1.0); default version: newest",
    )
    create.add_argument("--version", metavar="V", help="the version, when one component is bundled")
    create.add_argument("-o", "--output", required=True, type=Path, metavar="DIR", help="a new or empty directory")
    create.set_defaults(handler=run_bundle_create)


def run_bundle_create(args: argparse.Namespace, settings: Settings) -> int:
    wanted = parse_components(args.component, args.version)
    entries = asyncio.run(BundleMaker(settings).create(wanted, args.output))
    rows = [
        (entry.component, entry.version, f"{entry.component}/{entry.archive}", entry.files[entry.archive])
        for entry in entries
    ]
    print(tables.render(("COMPONENT", "VERSION", "ARCHIVE", "SHA256"), rows))
    print(f"\nbundle written to {args.output} (index: {INDEX_FILE}); on a device:")
    for entry in entries:
        print(f"  dunebugger-updater update {entry.component} --from {args.output}")
    return EXIT_OK


def parse_components(values: list[str], version: str | None) -> list[Wanted]:
    """`["core", "scheduler=1.1.0,remote"]` -> one Wanted each; `version` for a lone one."""
    wanted = []
    for item in (part.strip() for value in values for part in value.split(",")):
        name, _, asked = item.partition("=")
        if not name:
            raise BadRequest(f"--component: {item!r} names no component")
        wanted.append(Wanted(name, requested_version(asked, f"--component {name}") if asked else None))
    names = [item.component for item in wanted]
    if len(set(names)) != len(names):
        raise BadRequest(f"--component: each component may appear once (got {', '.join(names)})")
    if version is not None:
        if len(wanted) != 1 or wanted[0].version is not None:
            raise BadRequest("--version goes with exactly one --component NAME; for several use NAME=VERSION")
        wanted = [Wanted(wanted[0].component, requested_version(version, "--version"))]
    return wanted
