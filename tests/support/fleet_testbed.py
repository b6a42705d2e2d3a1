"""Several test hosts on one machine: network namespaces on a private bridge, each with
its own sshd, hostname and /opt, reached by Ansible over SSH (TESTBED.md, "Several hosts").

Per host, an *anchor* process (`sleep infinity`) is started as

    ip netns exec NS unshare --mount --uts sh -c 'hostname H; mount -t tmpfs tmpfs /opt; exec sleep infinity'

and owns the host's mount and UTS namespaces. Everything else of the host (sshd, the
sandbox core, set-up scripts) enters them with `nsenter -t <anchor> -m -u -n`, so sshd can
be stopped and started again (the "unreachable" scenario) without losing the host's /opt.
Files of a host are read from the controller through /proc/<anchor>/root.

Teardown kills exactly the processes living in a host's mount namespace (all of them
were started here), then deletes the namespaces and the bridge.

Used by tests/fleet/conftest.py and bench/fleet_bench.py. Needs root, iproute2 and
openssh-server (ci/install-system-packages.sh installs both).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import yaml

from dunebugger_updater.demo.sandbox import appctl as appctl_module

SSHD = "/usr/sbin/sshd"
DEVICE_PYTHON = "/usr/bin/python3"
CORE_HOME = "/opt/dunebugger"
INSTALLED_VERSION = "1.0.0"
FIRST_APP_PORT = 18080

# Runs inside a host (its own /opt): a fresh plain-directory core of VERSION, started.
_RESET_CORE = """
import shutil, sys
from pathlib import Path
from typing import Self
from dunebugger_updater.demo.sandbox import appctl, releases
home, version, port = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
if home.exists():
    appctl.stop(home)
    shutil.rmtree(home)
releases.make_sandbox(home, version, port=port)
appctl.start(home)
"""


class TestbedError(RuntimeError):
    pass


def require_tools() -> None:
    """Fail (never skip) with a clear message when the machine cannot host namespaces."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the fleet tests must run as root (network namespaces, mounts)")
    for tool in ("ip", "nsenter", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            problems.append(f"{tool} is missing")
    if not Path(SSHD).is_file():
        problems.append(f"{SSHD} is missing (apt-get install openssh-server)")
    if (
        not Path(DEVICE_PYTHON).is_file()
        or subprocess.run([DEVICE_PYTHON, "-c", "import yaml"], capture_output=True, check=False).returncode != 0
    ):
        problems.append(f"{DEVICE_PYTHON} with PyYAML is missing (apt-get install python3-yaml)")
    if not problems:
        probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
        if probe.returncode != 0:
            problems.append(f"`ip netns` does not work: {probe.stderr.strip()}")
    if problems:
        raise TestbedError(
            "fleet test bed unavailable: " + "; ".join(problems) + " (run ci/install-system-packages.sh as root)"
        )


def _run(argv: list[str], *, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise TestbedError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    return done


@dataclass
class Host:
    name: str  # inventory name and hostname
    netns: str
    address: str
    app_port: int
    directory: Path  # on the controller: sshd config, host key, pid file
    anchor_pid: int = 0
    sshd: subprocess.Popen | None = None

    # --- inside the host -------------------------------------------------------------

    def enter(self, *argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return _run(
            ["nsenter", "-t", str(self.anchor_pid), "-m", "-u", "-n", "--", *argv], check=check, timeout=timeout
        )

    def path(self, inside: str) -> Path:
        """A path of this host, seen from the controller."""
        return Path(f"/proc/{self.anchor_pid}/root") / inside.lstrip("/")

    def reset_core(self, version: str = INSTALLED_VERSION) -> None:
        self.enter(sys.executable, "-c", _RESET_CORE, CORE_HOME, version, str(self.app_port))

    def installed_version(self) -> str | None:
        # Read inside the host: after an update core is a symlink to an absolute path,
        # which the controller's view of the host's files would resolve in its own /opt.
        done = self.enter("cat", f"{CORE_HOME}/core/VERSION", check=False)
        text = done.stdout.strip()
        if done.returncode != 0:
            return None
        return yaml.safe_load(text)["version"] if text.startswith("{") else text

    def app_pid(self) -> int | None:
        try:
            pid = int(self.path(f"{CORE_HOME}/app.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if Path(f"/proc/{pid}").exists() else None

    def health(self) -> str | None:
        """The version /health reports inside the host, or None."""
        probe = (
            "import json, sys, urllib.request\n"
            f"print(json.load(urllib.request.urlopen('http://127.0.0.1:{self.app_port}/health', timeout=2))['version'])"
        )
        done = self.enter(sys.executable, "-c", probe, check=False)
        return done.stdout.strip() if done.returncode == 0 else None

    def pristine(self) -> bool:
        """Still exactly as reset_core() left it: plain 1.0.0 directory, nothing staged, running."""
        home = self.path(CORE_HOME)
        return (
            not (home / "core").is_symlink()
            and self.installed_version() == INSTALLED_VERSION
            and not (home / "releases").exists()
            and not any((home / "backups").iterdir())
            and self.app_pid() is not None
        )

    def hostname(self) -> str:
        return self.enter("hostname").stdout.strip()

    # --- sshd ------------------------------------------------------------------------

    def start_sshd(self) -> None:
        argv = [
            "nsenter",
            "-t",
            str(self.anchor_pid),
            "-m",
            "-u",
            "-n",
            "--",
            SSHD,
            "-D",
            "-e",
            "-f",
            str(self.directory / "sshd_config"),
        ]
        with open(self.directory / "sshd.log", "ab") as log:
            self.sshd = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection((self.address, 22), timeout=1).close()
                return
            except OSError:
                pass
            if self.sshd.poll() is not None:
                break
            time.sleep(0.05)
        raise TestbedError(f"sshd of {self.name} did not start; see {self.directory / 'sshd.log'}")

    def stop_sshd(self) -> None:
        """Stop the listener and every session it started (ControlPersist would otherwise
        keep the controller's connections alive and the host reachable), and the
        controller's master connection to it: the host is then refused, as a device that
        is off is, rather than found half-gone by a master of an earlier test."""
        if self.sshd and self.sshd.poll() is None:
            self.sshd.terminate()
            self.sshd.wait(10)
        self.sshd = None
        _kill_namespace(self.anchor_pid, only="sshd")
        self.close_master()

    def close_master(self) -> None:
        """End the controller's SSH master connection to this host (Ansible's ControlPath):
        the next task connects afresh, host key check included."""
        _run(
            ["ssh", "-O", "exit", "-o", f"ControlPath={Path.home()}/.ansible/cp/%C", "-l", "root", self.address],
            check=False,
        )


class Fleet:
    """`count` hosts named h1..hN on 10.231.<octet>.0/24; a context manager."""

    def __init__(self, workdir: Path, count: int = 4, *, octet: int = 7, tag: str | None = None) -> None:
        self.workdir = workdir
        self.octet = octet
        self.tag = tag or f"f{os.getpid() % 100000}"
        self.bridge = f"dbr{self.tag}"[:15]
        self.key = workdir / "id_ed25519"
        self.known_hosts = workdir / "known_hosts"  # every host's key: fleet runs check them
        self.inventory = workdir / "inventory.yml"
        self.hosts = [
            Host(
                name=f"h{index}",
                netns=f"dbf-{self.tag}-h{index}",
                address=f"10.231.{octet}.{10 + index}",
                app_port=FIRST_APP_PORT + index,
                directory=workdir / f"h{index}",
            )
            for index in range(1, count + 1)
        ]

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getitem__(self, name: str) -> Host:
        return next(host for host in self.hosts if host.name == name)

    # --- set-up ----------------------------------------------------------------------

    def start(self) -> None:
        require_tools()
        self.workdir.mkdir(parents=True, exist_ok=True)
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)])
        _run(["ip", "link", "add", self.bridge, "type", "bridge"])
        _run(["ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge])
        _run(["ip", "link", "set", self.bridge, "up"])
        for index, host in enumerate(self.hosts, start=1):
            self._network(host, index)
            self._anchor(host)
            self._sshd_files(host)
        self.known_hosts.write_text(
            "".join(
                f"{host.address} {' '.join((host.directory / 'host_key.pub').read_text().split()[:2])}\n"
                for host in self.hosts
            )
        )
        self._before_boot()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._boot, self.hosts))
        self.write_inventory()

    def _before_boot(self) -> None:
        """What the hosts need from the controller's side once the bridge is up."""

    @property
    def gateway(self) -> str:
        """The controller's address on the hosts' bridge."""
        return f"10.231.{self.octet}.1"

    def _network(self, host: Host, index: int) -> None:
        outside, inside = f"v{self.tag}{index}"[:15], f"v{self.tag}{index}p"[:15]
        _run(["ip", "netns", "add", host.netns])
        _run(["ip", "link", "add", outside, "type", "veth", "peer", "name", inside])
        _run(["ip", "link", "set", outside, "master", self.bridge, "up"])
        _run(["ip", "link", "set", inside, "netns", host.netns])
        inns = ["ip", "netns", "exec", host.netns]
        _run([*inns, "ip", "link", "set", inside, "name", "eth0"])
        _run([*inns, "ip", "addr", "add", f"{host.address}/24", "dev", "eth0"])
        _run([*inns, "ip", "link", "set", "eth0", "up"])
        _run([*inns, "ip", "link", "set", "lo", "up"])

    def _anchor(self, host: Host) -> None:
        script = f"hostname {host.name} && mount -t tmpfs -o size=256m tmpfs /opt && exec sleep infinity"
        # nsenter, not `ip netns exec`: that one remounts /sys, hiding the cgroup mounts a
        # container engine in the host needs.
        with open(host.directory.parent / f"{host.name}-anchor.log", "ab") as log:
            anchor = subprocess.Popen(
                [
                    "nsenter",
                    f"--net=/run/netns/{host.netns}",
                    "unshare",
                    "--mount",
                    "--uts",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    script,
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        host.anchor_pid = anchor.pid  # nsenter, unshare and sh all exec: this pid becomes sleep
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if _comm(anchor.pid) == "sleep":
                return
            if anchor.poll() is not None:
                raise TestbedError(f"namespace anchor of {host.name} failed (see {host.name}-anchor.log)")
            time.sleep(0.02)
        raise TestbedError(f"namespace anchor of {host.name} did not come up")

    def _sshd_files(self, host: Host) -> None:
        host.directory.mkdir(parents=True, exist_ok=True)
        _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host.directory / "host_key")])
        shutil.copy(self.key.with_suffix(".pub"), host.directory / "authorized_keys")
        (host.directory / "sshd_config").write_text(
            f"ListenAddress {host.address}\n"
            "Port 22\n"
            f"HostKey {host.directory / 'host_key'}\n"
            f"PidFile {host.directory / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {host.directory / 'authorized_keys'}\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "UseDNS no\n"
            "MaxStartups 100\n"
            "MaxSessions 100\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel ERROR\n" + self._session_environment(host)
        )

    def _session_environment(self, host: Host) -> str:
        """sshd_config lines that set variables in the host's SSH sessions."""
        return ""

    def _boot(self, host: Host) -> None:
        host.start_sshd()
        self._install(host)

    def write_inventory(self) -> Path:
        """The fleet as an Ansible inventory: h1 is the canary, the rest production."""
        return self.write(
            self.inventory,
            {
                "canary": {"hosts": {self.hosts[0].name: self.host_vars(self.hosts[0])}},
                "production": {"hosts": {host.name: self.host_vars(host) for host in self.hosts[1:]}},
            },
        )

    def write(self, path: Path, children: dict) -> Path:
        """An inventory of these hosts grouped as `children` (all.children), with the
        connection and device settings every host shares."""
        document = {"all": {"vars": self.common_vars(), "children": children}}
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    def common_vars(self) -> dict:
        home = CORE_HOME
        # appctl as a script: `-m dunebugger_updater...` would import the whole package
        # (httpx, ...) on every status poll, ten times slower.
        appctl = [sys.executable, appctl_module.__file__, "--home", home]
        return {
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
            "ansible_ssh_common_args": f"-o UserKnownHostsFile={self.known_hosts}",
            # A device's Python runs the modules (Debian's, with python3-yaml), not the
            # controller's venv: its start-up alone would cost ten times more per task.
            "ansible_python_interpreter": DEVICE_PYTHON,
            "ansible_pipelining": True,
            "core_install_path": f"{home}/core",
            "core_backup_path": f"{home}/backups",
            "core_service_manager": "command",
            "core_start_command": [*appctl, "start"],
            "core_stop_command": [*appctl, "stop"],
            "core_status_command": [*appctl, "status"],
            "core_health_timeout_seconds": 6,
            "core_python": sys.executable,
            "core_min_free_mb": 10,
        }

    @staticmethod
    def host_vars(host: Host) -> dict:
        return {"ansible_host": host.address, "core_health_url": f"http://127.0.0.1:{host.app_port}/health"}

    def reset(self) -> None:
        """Every host reachable again and as it was booted (hosts a test did not change
        are left as they are: a reset costs about a second per host)."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._reset_host, self.hosts))

    def _reset_host(self, host: Host) -> None:
        if host.sshd is None:
            host.start_sshd()
        if not self._pristine(host):
            self._install(host)

    @staticmethod
    def _pristine(host: Host) -> bool:
        return host.pristine()

    def _install(self, host: Host) -> None:
        """A fresh core 1.0.0, started."""
        host.reset_core()
        wait_for(lambda: host.health() == INSTALLED_VERSION, f"core 1.0.0 on {host.name}")

    # --- teardown --------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts:
            host.stop_sshd()
            if host.anchor_pid:
                _kill_namespace(host.anchor_pid)
            _run(["ip", "netns", "del", host.netns], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)


def wait_for(condition, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise TestbedError(f"timed out waiting for {what}")


def _comm(pid: int | str) -> str | None:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return None


def _mount_ns(pid: int | str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/mnt")
    except OSError:
        return None


def _kill_namespace(anchor_pid: int, only: str | None = None) -> None:
    """Kill every process in the anchor's mount namespace (all started by this test bed),
    or only those whose command name is `only`."""
    namespace = _mount_ns(anchor_pid)
    if namespace is None or namespace == _mount_ns("self"):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        members = [
            int(p)
            for p in os.listdir("/proc")
            if p.isdigit() and _mount_ns(p) == namespace and (only is None or _comm(p) == only)
        ]
        for pid in members:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 3
        while members and time.monotonic() < deadline:
            members = [
                pid for pid in members if _mount_ns(pid) == namespace and _comm(pid) is not None and not _is_zombie(pid)
            ]
            time.sleep(0.05)
        if not members:
            break
    try:
        os.waitpid(anchor_pid, os.WNOHANG)
    except ChildProcessError:
        pass


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def free_octet(preferred: int) -> int:
    """`preferred` unless another bridge on this machine already uses 10.231.<octet>.0/24."""
    used = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for octet in [preferred, *range(200, 250)]:
        if f"10.231.{octet}." not in used:
            return octet
    raise TestbedError("no free 10.231.x.0/24 subnet")


__all__ = ["Fleet", "Host", "TestbedError", "free_octet", "require_tools", "wait_for"]
