"""Fleet runs check every device's SSH host key (ansible-runner alone would not): a
device answering with another key than the one known for it is never talked to, so
an impostor on the network gets no run and no become password."""

from __future__ import annotations

import subprocess


def known_hosts_line(address: str, public_key_file) -> str:
    kind, key = public_key_file.read_text().split()[:2]
    return f"{address} {kind} {key}\n"


def test_a_device_with_an_unexpected_host_key_is_not_talked_to(fleet, controller, tmp_path):
    """h2 is known with another key (an impostor answers at its address), h3 not at all.
    The dry run's versions pass is the first contact a rollout makes with a device."""
    controller.publish("1.1.0")
    impostor = tmp_path / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(impostor)], check=True)
    known = tmp_path / "known_hosts"
    known.write_text(
        known_hosts_line(fleet["h1"].address, fleet["h1"].directory / "host_key.pub")
        + known_hosts_line(fleet["h2"].address, impostor.with_suffix(".pub"))
    )
    hosts = {
        host.name: {**fleet.host_vars(host), "ansible_ssh_common_args": f"-o UserKnownHostsFile={known}"}
        for host in fleet.hosts[:3]
    }
    inventory = fleet.write(tmp_path / "checked.yml", {"devices": {"hosts": hosts}})
    for host in fleet.hosts:
        host.close_master()  # no connection of an earlier test may stand in for the check
    # nor a master another test opened under its own control path (the plain ansible-runner layout's)
    subprocess.run(["pkill", "-f", r"^ssh: .* \[mux\]$"], check=False)

    status, message = controller.fleet_json("update", "core", "-i", str(inventory), "--dry-run")

    assert status == 1
    devices = message["body"]["devices"]
    assert {host: device["outcome"] for host, device in devices.items()} == {
        "h1": "planned",
        "h2": "unreachable",
        "h3": "unreachable",
    }
    assert message["body"]["rollout"]["plan"] == [["h1"]]
    assert "Host key verification failed" in devices["h2"]["reason"]
    assert "Host key verification failed" in devices["h3"]["reason"]
