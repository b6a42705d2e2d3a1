"""Inventories as the fleet reads them, through ansible-inventory (no hosts needed):
canary first at any depth, --limit, and the refusals."""

from __future__ import annotations

from pathlib import Path

import pytest

from dunebugger_updater.errors import BadRequest
from dunebugger_updater.fleet.inventory import read_inventory

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
