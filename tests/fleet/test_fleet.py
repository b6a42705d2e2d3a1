"""Fleet rollouts over four SSH hosts (h1 = canary, h2..h4 = production), through the
CLI, the real playbooks and ansible-runner; plus one `ansible-playbook` run by hand."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from support.fingerprint import sha256_file

REPO = Path(__file__).resolve().parents[2]
CORE = "/opt/dunebugger/core"


def devices(message: dict) -> dict[str, dict]:
    assert message["subject"] == "fleet_result" and message["source"] == "controller"
    return message["body"]["devices"]


def outcomes(message: dict) -> dict[str, str]:
    return {host: device["outcome"] for host, device in devices(message).items()}


def pids(fleet) -> dict[str, int | None]:
    return {host.name: host.app_pid() for host in fleet.hosts}


def test_hosts_are_separate_machines(fleet):
    assert [host.hostname() for host in fleet.hosts] == ["h1", "h2", "h3", "h4"]
    marker = fleet["h1"].path("/opt") / "marker"
    marker.write_text("only on h1")
    assert not (fleet["h2"].path("/opt") / "marker").exists() and not Path("/opt/marker").exists()
    marker.unlink()
    assert len({host.app_pid() for host in fleet.hosts}) == 4


def test_check_reports_each_device_and_the_latest_release(fleet, controller):
    controller.publish("1.1.0")
    fleet["h2"].reset_core("1.0.5")

    status, message = controller.fleet_json("check", "-i", str(fleet.inventory))

    assert status == 0 and message["subject"] == "fleet_check_result"
    body = message["body"]
    assert (body["latest"], body["latest_tag"]) == ("1.1.0", "v1.1.0")
    assert {host: d["version"] for host, d in body["devices"].items()} == {
        "h1": "1.0.0",
        "h2": "1.0.5",
        "h3": "1.0.0",
        "h4": "1.0.0",
    }
    assert all(d["update_available"] and not d["unreachable"] for d in body["devices"].values())


def test_canary_fails_health_check_and_nothing_else_is_touched(fleet, controller):
    controller.publish("1.1.0", health="fail")
    before = pids(fleet)

    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory))

    assert status == 1
    body = message["body"]
    assert not body["success"] and body["rollout"]["stopped"]
    assert outcomes(message) == {"h1": "rolled_back", "h2": "not_started", "h3": "not_started", "h4": "not_started"}
    canary = devices(message)["h1"]
    assert (canary["version_before"], canary["version_after"], canary["rolled_back"]) == ("1.0.0", "1.0.0", True)
    assert "500" in canary["reason"] or "health" in canary["reason"].lower()
    assert fleet["h1"].health() == "1.0.0"
    for host in fleet.hosts[1:]:
        assert host.health() == "1.0.0" and host.installed_version() == "1.0.0"
        assert host.app_pid() == before[host.name], f"{host.name} was restarted"
        assert not host.path(CORE).is_symlink(), f"{host.name} was migrated: the rollout touched it"
        assert not host.path("/opt/dunebugger/releases").exists()


def test_a_batch_over_max_fail_percentage_stops_the_rollout(fleet, controller, tmp_path):
    controller.publish("1.1.0")
    inventory = yaml.safe_load(fleet.inventory.read_text())
    inventory["all"]["children"]["production"]["hosts"]["h3"]["core_min_free_mb"] = 10**9  # h3 refuses
    tight = tmp_path / "inventory.yml"
    tight.write_text(yaml.safe_dump(inventory))
    h4_pid = fleet["h4"].app_pid()

    # batches [h2, h3], [h4]: one failure in two is over 0 % (not the whole batch failing)
    status, message = controller.fleet_json(
        "update", "core", "-i", str(tight), "--limit", "production", "--batches", "2,1", "--max-fail-percentage", "0"
    )

    assert status == 1
    assert {h: (d["batch"], d["outcome"]) for h, d in devices(message).items()} == {
        "h2": (1, "updated"),
        "h3": (1, "refused"),
        "h4": (2, "not_started"),
    }
    assert "free" in devices(message)["h3"]["reason"]
    assert [host.health() for host in fleet.hosts] == ["1.0.0", "1.1.0", "1.0.0", "1.0.0"]
    assert fleet["h4"].app_pid() == h4_pid


def test_limit_pattern_and_devices_already_up_to_date(fleet, controller):
    controller.publish("1.1.0")
    fleet["h3"].reset_core("1.1.0")
    before = pids(fleet)

    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory), "--limit", "production:!h4")

    assert status == 0, message
    assert outcomes(message) == {"h2": "updated", "h3": "up_to_date"}
    assert devices(message)["h3"]["batch"] is None, "an up-to-date device is not part of the run"
    assert {name: fleet[name].app_pid() for name in ("h1", "h3", "h4")} == {
        name: before[name] for name in ("h1", "h3", "h4")
    }
    assert [host.health() for host in fleet.hosts] == ["1.0.0", "1.1.0", "1.1.0", "1.0.0"]


def test_bad_input_exits_2(fleet, controller):
    controller.publish("1.1.0")
    inventory = str(fleet.inventory)
    assert controller.cli("fleet", "update", "core", "-i", inventory, "--batches", "1,0%").returncode == 2
    assert controller.cli("fleet", "update", "core", "-i", inventory, "--max-fail-percentage", "101").returncode == 2
    assert controller.cli("fleet", "update", "core", "-i", "/nonexistent.yml").returncode == 2
    done = controller.cli("fleet", "update", "core", "-i", inventory, "--limit", "nosuchhost")
    assert done.returncode == 2 and "no device" in done.stderr


def test_ansible_playbook_by_hand_rolls_out_in_batches(fleet, controller, tmp_path):
    archive = controller.publish("1.1.0")
    extra = tmp_path / "vars.yml"
    extra.write_text(
        yaml.safe_dump(
            {
                "dunebugger_version": "1.1.0",
                "core_archive": str(archive),
                "core_archive_sha256": sha256_file(archive),
                "dunebugger_batches": [1, "100%"],
                "dunebugger_max_fail_percentage": 0,
            }
        )
    )

    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(fleet.inventory),
            "--limit",
            "h1,h3",
            "playbooks/update_core.yml",
            "-e",
            f"@{extra}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )

    assert done.returncode == 0, done.stdout[-3000:]
    assert done.stdout.count("PLAY [Update core]") == 2, "two batches: the canary, then the rest"
    assert [host.health() for host in fleet.hosts] == ["1.1.0", "1.0.0", "1.1.0", "1.0.0"]


def test_the_canary_goes_first_however_deep_its_group_and_an_unreachable_device_is_left_out(
    fleet, controller, tmp_path
):
    """Ansible alone would start with the shallowest group (here the unreachable h4, and
    all real devices would end `not_started`)."""
    controller.publish("1.1.0")
    hosts = {host.name: fleet.host_vars(host) for host in fleet.hosts}
    nested = fleet.write(
        tmp_path / "nested.yml",
        {
            "offline": {"hosts": {"h4": hosts["h4"]}},
            "fleet": {
                "children": {
                    "production": {"hosts": {"h3": hosts["h3"], "h2": hosts["h2"]}},
                    "sites": {"children": {"lab": {"children": {"canary": {"hosts": {"h1": hosts["h1"]}}}}}},
                }
            },
        },
    )
    fleet["h4"].stop_sshd()

    status, message = controller.fleet_json("update", "core", "-i", str(nested))

    assert status == 1
    assert message["body"]["rollout"]["plan"] == [["h1"], ["h2", "h3"]]
    assert controller.played_batches(message) == [["h1"], ["h2", "h3"]], "Ansible ran the canary alone, first"
    assert {h: (d["batch"], d["outcome"]) for h, d in devices(message).items()} == {
        "h1": (1, "updated"),
        "h2": (2, "updated"),
        "h3": (2, "updated"),
        "h4": (None, "unreachable"),
    }
    h4 = devices(message)["h4"]
    assert (h4["unreachable"], h4["rolled_back"], h4["version_before"]) == (True, False, None)
    assert "Connection refused" in h4["reason"]
    assert [host.health() for host in fleet.hosts] == ["1.1.0", "1.1.0", "1.1.0", "1.0.0"]
    # resolved once on the controller: one release lookup, one download for every device
    paths = [request.path for request in controller.github.requests]
    assert sum(path.endswith("/releases/latest") for path in paths) == 1
    assert sum("/releases/download/" in path for path in paths) == 1


def test_the_reason_a_device_cannot_be_reached_is_shown(fleet, controller):
    controller.publish("1.1.0")
    fleet["h2"].stop_sshd()

    status, message = controller.fleet_json("check", "-i", str(fleet.inventory))
    table = controller.cli("fleet", "check", "-i", str(fleet.inventory)).stdout

    assert status == 1
    h2 = message["body"]["devices"]["h2"]
    assert h2["unreachable"] and "ssh" in h2["error"] and "Connection refused" in h2["error"]
    row = next(line for line in table.splitlines() if line.startswith("h2 "))
    assert "unreachable" in row and "Connection refused" in row


def test_dry_run_prints_the_batches_and_the_release_and_changes_nothing(fleet, controller):
    controller.publish("1.1.0")
    fleet["h3"].reset_core("1.1.0")
    before = pids(fleet)

    done = controller.cli("fleet", "update", "core", "-i", str(fleet.inventory), "--dry-run", "--batches", "1,50%")
    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory), "--dry-run")

    assert done.returncode == 0, done.stderr
    assert "core 1.1.0 (release v1.1.0)" in done.stdout and "[h1] [h2] [h4]" in done.stdout
    assert "Nothing was changed" in done.stdout
    assert status == 0
    body = message["body"]
    assert (body["dry_run"], body["version"], body["release"]) == (True, "1.1.0", "v1.1.0")
    assert body["rollout"]["plan"] == [["h1"], ["h2", "h4"]]
    assert {h: (d["batch"], d["outcome"]) for h, d in devices(message).items()} == {
        "h1": (1, "planned"),
        "h2": (2, "planned"),
        "h3": (None, "up_to_date"),
        "h4": (2, "planned"),
    }
    assert pids(fleet) == before
    assert all(fleet[name].pristine() for name in ("h1", "h2", "h4"))


def test_a_rollout_with_the_mitogen_strategy(fleet, controller):
    """fleetStrategy = mitogen_linear (opt-in): the same rollout, canary first."""
    controller.publish("1.1.0")
    controller.config.write_text(
        controller.config.read_text().replace("fleetStrategy = linear", "fleetStrategy = mitogen_linear")
    )

    status, message = controller.fleet_json("update", "core", "-i", str(fleet.inventory), "--limit", "h1,h2")

    assert status == 0, message
    assert controller.played_batches(message) == [["h1"], ["h2"]]
    assert [host.health() for host in fleet.hosts] == ["1.1.0", "1.1.0", "1.0.0", "1.0.0"]
    run_id = message["body"]["run_id"]
    command = json.loads((controller.state / "fleet-runs" / run_id / "artifacts" / run_id / "command").read_text())
    assert command["env"]["ANSIBLE_STRATEGY"] == "mitogen_linear"
