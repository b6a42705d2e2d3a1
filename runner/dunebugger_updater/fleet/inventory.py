"""A fleet's inventory as Ansible reads it, and the order a rollout goes through it.

`ansible-inventory --list` parses the file, so every format Ansible knows works; a file
it cannot parse is bad input, reported with the parser's own message (never read as an
empty fleet). The rollout order is explicit, never Ansible's group-by-group walk
(shallowest group first): the hosts of the `canary` group, at any depth, come first,
then every other host; each part in natural name order (h2 before h10).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..environment import child_environment
from ..errors import BadRequest

CANARY_GROUP = "canary"
PARSE_TIMEOUT_SECONDS = 120
# Host names become the play's host list: a pattern character would select other hosts.
_PATTERN_CHARACTERS = re.compile(r"[,*?!&~\[\]\s]")
_PLUGIN_FAILURE = re.compile(r"^\[WARNING\]: Failed to parse inventory with '(\w+)' plugin: (.+)$")
_ORIGIN = re.compile(r"^Origin: \S+?:(\d+):(\d+)$")
_YAML_SUFFIXES = (".yml", ".yaml", ".json")


@dataclass(frozen=True)
class Inventory:
    path: Path
    hosts: tuple[str, ...]  # selected by --limit, in rollout order
    canary: frozenset[str]

    def where(self, limit: str | None) -> str:
        return f"inventory {self.path}" + (f" with --limit {limit!r}" if limit else "")


def read_inventory(path: Path, limit: str | None = None) -> Inventory:
    """The hosts of `path` that `limit` selects, canary first; BadRequest when the file
    cannot be parsed or selects no host."""
    document = _ansible_inventory(path, limit)
    groups = {name: group for name, group in document.items() if name != "_meta" and isinstance(group, Mapping)}
    hosts = {host for group in groups.values() for host in group.get("hosts") or ()}
    inventory = Inventory(path, (), frozenset())
    if not hosts:
        raise BadRequest(f"no device in {inventory.where(limit)}")
    odd = sorted(host for host in hosts if _PATTERN_CHARACTERS.search(host))
    if odd:
        raise BadRequest(
            f"inventory {path}: host name {odd[0]!r} has a character of Ansible's host patterns; "
            "rename it (its address goes in ansible_host)"
        )
    canary = frozenset(_members(groups, CANARY_GROUP) & hosts)
    return Inventory(path, rollout_order(hosts, canary), canary)


def rollout_order(hosts: set[str] | frozenset[str], canary: frozenset[str]) -> tuple[str, ...]:
    return (*sorted(canary & hosts, key=natural_key), *sorted(hosts - canary, key=natural_key))


def natural_key(name: str) -> tuple:
    """h2 before h10."""
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name))


def _members(groups: Mapping[str, Mapping[str, Any]], name: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Hosts of group `name` and of every group below it."""
    group = groups.get(name) or {}
    hosts = set(group.get("hosts") or ())
    for child in group.get("children") or ():
        if child not in seen:
            hosts |= _members(groups, child, seen | {name})
    return hosts


def _ansible_inventory(path: Path, limit: str | None) -> dict[str, Any]:
    environment = {**child_environment(), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_NOCOLOR": "true"}
    program = shutil.which("ansible-inventory", path=environment["PATH"])
    if program is None:
        raise BadRequest("ansible-inventory is not installed (pip install ansible-core)")
    argv = [program, "-i", str(path), "--list", *(["--limit", limit] if limit else [])]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, env=environment, timeout=PARSE_TIMEOUT_SECONDS, check=False
        )
    except subprocess.TimeoutExpired:
        raise BadRequest(
            f"inventory {path}: ansible-inventory did not answer within {PARSE_TIMEOUT_SECONDS} s"
        ) from None
    if done.returncode != 0:
        raise BadRequest(f"inventory {path} cannot be used: {parser_message(done.stderr, path)}")
    try:
        return json.loads(done.stdout)
    except ValueError:
        raise BadRequest(f"inventory {path}: ansible-inventory printed no inventory") from None


def parser_message(stderr: str, path: Path) -> str:
    """The one line of ansible-inventory's complaints that concerns the file's format:
    the YAML parser's for .yml/.yaml/.json files, else the INI parser's."""
    lines = [line.strip() for line in stderr.splitlines()]
    failures: dict[str, str] = {}
    for line in lines:
        match = _PLUGIN_FAILURE.match(line)
        if match:
            failures.setdefault(match[1], match[2].rstrip("."))
    preferred = ("yaml", "auto") if path.suffix.lower() in _YAML_SUFFIXES else ("ini",)
    message = next((failures[name] for name in (*preferred, *failures) if name in failures), None)
    if message is None:
        complaints = [line.split("]: ", 1)[1] for line in lines if line.startswith(("[ERROR]", "[WARNING]"))]
        if complaints:
            return complaints[0]
        # Ansible failing before it parses anything (its home not writable, ...) ends
        # with a traceback: its last line is the message.
        last = next((line for line in reversed(lines) if line), "no message")
        if "Unable to create local directories" in last:
            last += " (set HOME, or ANSIBLE_HOME, to a directory this user can write)"
        return f"ansible-inventory failed: {last.removeprefix('ansible.errors.AnsibleError: ')}"
    place = next((match for match in map(_ORIGIN.match, lines) if match), None)
    return message + (f" (line {place[1]}, column {place[2]})" if place else "")
