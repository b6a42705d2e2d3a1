"""Inventories as the fleet reads them, through ansible-inventory (no hosts needed):
canary first at any depth, --limit, and the refusals, also as the command gives them."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunebugger_updater.errors import BadRequest
from dunebugger_updater.fleet.inventory import read_inventory
from support.cli import run_cli

EXAMPLE = Path(__file__).resolve().parents[2] / "inventory" / "fleet.example.yml"


def test_the_example_inventory_goes_canary_first_then_by_name():
    inventory = read_inventory(EXAMPLE)
    assert inventory.hosts == (
        "dunebugger-lab.local",
        "dunebugger-01.local",
        "dunebugger-02.local",
        "dunebugger-03.local",
        "dunebugger-04.local",
    )
    assert inventory.canary == {"dunebugger-lab.local"}
    assert read_inventory(EXAMPLE, "hall_b:production:!dunebugger-04.local").hosts == (
        "dunebugger-01.local",
        "dunebugger-02.local",
        "dunebugger-03.local",
    )


def test_an_ini_inventory_with_a_nested_canary(tmp_path):
    ini = tmp_path / "fleet.ini"
    ini.write_text("[offline]\nzz\n[production]\nh10\nh2\n[lab]\nh7\n[canary:children]\nlab\n")
    inventory = read_inventory(ini)
    assert (inventory.hosts, inventory.canary) == (("h7", "h2", "h10", "zz"), {"h7"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[canary]\nc1\n[prod\np1\n", "cannot be used: Failed to parse inventory"),
        ("all:\n  hosts:\n    'web*':\n", "host name 'web*' has a character of Ansible's host patterns"),
    ],
)
def test_inventories_the_fleet_refuses(tmp_path, text, message):
    path = tmp_path / ("fleet.ini" if text.startswith("[") else "fleet.yml")
    path.write_text(text)
    with pytest.raises(BadRequest, match=message.replace("*", r"\*").replace("(", r"\(")):
        read_inventory(path)


def test_a_broken_inventory_is_bad_input_with_the_parsers_message(tmp_path, github):
    config = tmp_path / "controller.conf"
    config.write_text(f"[Updater]\ngithubApiUrl = {github.url}\nstatePath = {tmp_path / 'state'}\n")
    broken = tmp_path / "fleet.yml"
    broken.write_text("all:\n  children:\n    canary:\n      hosts:\n        h1: {\n")
    empty = tmp_path / "empty.yml"
    empty.write_text("all:\n  children:\n    canary: {}\n")

    for verb in (("update", "core"), ("rollback", "core"), ("check",)):
        done = run_cli("fleet", *verb, "-i", str(broken), config=config)
        assert done.returncode == 2, (verb, done.stdout, done.stderr)
        assert f"inventory {broken} cannot be used: YAML parsing failed" in done.stderr
        assert "(line 6, column 1)" in done.stderr and "Traceback" not in done.stderr
    done = run_cli("fleet", "update", "core", "-i", str(empty), config=config)
    assert done.returncode == 2 and f"no device in inventory {empty}" in done.stderr
    assert github.requests == [], "nothing was looked up for an inventory that cannot be used"
