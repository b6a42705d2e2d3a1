"""Fleet hosts that run container components: each host of fleet_testbed.py with a
container engine of its own, as every real device has.

Per host, `dockerd` runs inside the host's network and mount namespaces with its own
data root, exec root, socket, bridge and cgroup parent (nothing shared with the test
bed's engine, which is never touched), and its SSH sessions get DOCKER_HOST pointing at
it. The host runs the scheduler and remote stand-ins (ci/test-images.sh) as one compose
stack under /opt/dunebugger. Images come from a second, read-only registry process that
serves the test bed registry's storage on the bridge (`<gateway>:5000`, plain HTTP:
each engine lists it as an insecure registry), so every host really pulls what an
update asks for.

Needs what ci/setup.sh sets up (the env file, the registry's storage with the test
images, compose v2) besides what fleet_testbed.py needs.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from support.ci_env import ENV_FILE, read_env_file
from support.fleet_testbed import Fleet, Host, TestbedError, wait_for

SERVICES = ("scheduler", "remote")
STACK_HOME = "/opt/dunebugger"
COMPOSE_FILE = f"{STACK_HOME}/docker-compose.yml"
INSTALLED = "1.0.0"
DOCKERD = "/usr/sbin/dockerd"
REGISTRY = "/usr/bin/docker-registry"
MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"


def ci_environment() -> dict[str, str]:
    """What ci/docker-up.sh wrote into its env file."""
    if not ENV_FILE.is_file():
        raise TestbedError(f"{ENV_FILE} not found: the container test bed is not set up; run ci/setup.sh (as root)")
    return read_env_file(ENV_FILE)


def compose_text(registry: str, versions: dict[str, str]) -> str:
    lines = ["# DuneBugger services of a fleet test host.", "services:"]
    for service in SERVICES:
        lines += [f"  {service}:", f"    image: {registry}/dunebugger-{service}:{versions[service]}", "    init: true"]
    return "\n".join(lines) + "\n"


class ContainerFleet(Fleet):
    """`count` hosts with an engine each, running scheduler and remote 1.0.0."""

    def __init__(self, workdir: Path, count: int, *, octet: int, tag: str, ci_env: dict[str, str]) -> None:
        super().__init__(workdir, count, octet=octet, tag=tag)
        self.ci_env = ci_env
        self.registry_process: subprocess.Popen | None = None
        self.engines: dict[str, subprocess.Popen] = {}  # host name -> its dockerd (nsenter execs it)

    @property
    def registry(self) -> str:
        return f"{self.gateway}:5000"

    # --- set-up ----------------------------------------------------------------------

    def start(self) -> None:
        for tool in (DOCKERD, REGISTRY):
            if not Path(tool).is_file():
                raise TestbedError(f"{tool} is missing: run ci/setup.sh (as root)")
        super().start()

    def _before_boot(self) -> None:
        self._start_registry()

    def _boot(self, host: Host) -> None:
        self._start_engine(host)
        super()._boot(host)

    def _install(self, host: Host) -> None:
        """scheduler and remote 1.0.0 from a fresh compose file; no backups."""
        self.set_stack(host, dict.fromkeys(SERVICES, INSTALLED))
        host.enter("rm", "-rf", f"{STACK_HOME}/backups")

    def set_stack(self, host: Host, versions: dict[str, str]) -> None:
        host.enter("mkdir", "-p", STACK_HOME)
        host.path(COMPOSE_FILE).write_text(compose_text(self.registry, versions))
        self.compose(host, "up", "-d", "--remove-orphans")
        wait_for(lambda: self.running(host) == versions, f"{versions} running on {host.name}", timeout=60)

    def _pristine(self, host: Host) -> bool:
        return (
            host.path(COMPOSE_FILE).read_text() == compose_text(self.registry, dict.fromkeys(SERVICES, INSTALLED))
            and self.running(host) == dict.fromkeys(SERVICES, INSTALLED)
            and not host.path(f"{STACK_HOME}/backups").exists()
        )

    def _session_environment(self, host: Host) -> str:
        config = self._engine_dir(host) / "config"
        return f"SetEnv DOCKER_HOST=unix://{self._socket(host)} DOCKER_CONFIG={config}\n"

    def common_vars(self) -> dict:
        return {**super().common_vars(), "container_health_timeout_seconds": 15, "container_min_free_mb": 10}

    def _start_registry(self) -> None:
        """The test bed registry's storage, served read-only on the bridge."""
        self._retag("dunebugger-scheduler", "1.8.0-unhealthy", "1.8.0")
        storage = Path(self.ci_env["DUNEBUGGER_CI_STATE"]) / "registry" / "data"
        config = self.workdir / "registry.yml"
        config.write_text(
            json.dumps(
                {
                    "version": 0.1,
                    "log": {"level": "info", "accesslog": {"disabled": False}},
                    "storage": {
                        "filesystem": {"rootdirectory": str(storage)},
                        "maintenance": {"readonly": {"enabled": True}, "uploadpurging": {"enabled": False}},
                    },
                    "http": {"addr": self.registry},
                }
            )
        )
        with open(self.workdir / "registry.log", "ab") as log:
            self.registry_process = subprocess.Popen(
                [REGISTRY, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        wait_for(
            lambda: self.registry_process.poll() is not None or _answers(f"http://{self.registry}/v2/"),
            "the fleet's registry",
        )
        if self.registry_process.poll() is not None:  # another process answers there: not ours
            raise TestbedError(f"the fleet's registry did not start; see {self.workdir / 'registry.log'}")

    def _retag(self, repository: str, source: str, target: str) -> None:
        """A version-shaped tag for a misbehaving test image (releases are versions), in
        the test bed registry, through its API."""
        base = f"http://{self.ci_env['DUNEBUGGER_REGISTRY']}/v2/{repository}/manifests/"
        request = urllib.request.Request(base + source, headers={"Accept": MANIFEST_TYPE})
        with urllib.request.urlopen(request, timeout=10) as answer:
            manifest, kind = answer.read(), answer.headers["Content-Type"]
        put = urllib.request.Request(base + target, data=manifest, method="PUT", headers={"Content-Type": kind})
        urllib.request.urlopen(put, timeout=10).close()

    def _start_engine(self, host: Host) -> None:
        directory = self._engine_dir(host)
        (directory / "config" / "cli-plugins").mkdir(parents=True, exist_ok=True)
        plugin = directory / "config" / "cli-plugins" / "docker-compose"
        if not plugin.exists():
            plugin.symlink_to(self.ci_env["DUNEBUGGER_COMPOSE_V2"])
        (directory / "daemon.json").write_text("{}\n")
        argv = [
            "nsenter",
            "-t",
            str(host.anchor_pid),
            "-m",
            "-u",
            "-n",
            "--",
            DOCKERD,
            "--config-file",
            str(directory / "daemon.json"),
            "--data-root",
            str(directory / "data"),
            "--exec-root",
            str(directory / "exec"),
            "--pidfile",
            str(directory / "pid"),
            "-H",
            f"unix://{self._socket(host)}",
            "--storage-driver",
            "overlay2",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--bip",
            "10.214.0.1/24",
            "--cgroup-parent",
            f"dbfleet-{self.tag}-{host.name}",
            "--insecure-registry",
            self.registry,
        ]
        with open(directory / "dockerd.log", "ab") as log:
            self.engines[host.name] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        wait_for(
            lambda: self.docker(host, "info", check=False).returncode == 0, f"the engine of {host.name}", timeout=60
        )

    # --- inside a host ---------------------------------------------------------------

    def docker(self, host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "DOCKER_HOST": f"unix://{self._socket(host)}"},
        )
        if check and done.returncode != 0:
            raise TestbedError(f"docker {' '.join(args)} on {host.name}: {done.stderr.strip()}")
        return done

    def compose(self, host: Host, *args: str) -> subprocess.CompletedProcess[str]:
        """`docker compose` inside the host, where its compose file is."""
        return host.enter(
            "env",
            f"DOCKER_HOST=unix://{self._socket(host)}",
            f"DOCKER_CONFIG={self._engine_dir(host) / 'config'}",
            "docker",
            "compose",
            "-f",
            COMPOSE_FILE,
            *args,
            timeout=120,
        )

    def running(self, host: Host) -> dict[str, str]:
        """service -> image tag of its running container."""
        lines = self.docker(host, "ps", "--format", '{{.Label "com.docker.compose.service"}} {{.Image}}').stdout
        return {service: image.rsplit(":", 1)[-1] for service, image in (line.split() for line in lines.splitlines())}

    def container_ids(self, host: Host) -> dict[str, str]:
        lines = self.docker(host, "ps", "--format", '{{.Label "com.docker.compose.service"}} {{.ID}}').stdout
        return dict(line.split() for line in lines.splitlines())

    def registry_mark(self) -> int:
        """Where the registry's access log ends now (for `manifest_fetches`)."""
        return (self.workdir / "registry.log").stat().st_size

    def manifest_fetches(self, image: str, since: int) -> dict[str, int]:
        """host name -> how many times its engine asked for the manifest of `image`
        (repository:tag: once per pull) since `since`, from the registry's access log."""
        repository, tag = image.rsplit(":", 1)
        request = f" /v2/{repository}/manifests/{tag} HTTP/"  # a pull asks for the tag once (HEAD or GET)
        with open(self.workdir / "registry.log", "rb") as log:
            log.seek(since)
            lines = log.read().decode(errors="replace").splitlines()
        names = {host.address: host.name for host in self.hosts}
        fetches = {host.name: 0 for host in self.hosts}
        for line in lines:
            if request in line and line.split(" ", 1)[0] in names:
                fetches[names[line.split(" ", 1)[0]]] += 1
        return fetches

    def _engine_dir(self, host: Host) -> Path:
        return host.directory / "engine"

    def _socket(self, host: Host) -> Path:
        return self._engine_dir(host) / "docker.sock"

    # --- teardown --------------------------------------------------------------------

    def close(self) -> None:
        for host in self.hosts:
            self._stop_engine(host)
        if self.registry_process is not None:
            self.registry_process.terminate()
            self.registry_process.wait(10)
        super().close()

    def _stop_engine(self, host: Host) -> None:
        """Containers first (their processes live outside the host's mount namespace,
        where the namespace teardown would not find them), then the engine."""
        engine = self.engines.pop(host.name, None)
        if engine is None:
            return
        ids = self.docker(host, "ps", "-aq", check=False).stdout.split()
        if ids:
            self.docker(host, "rm", "-f", *ids, check=False)
        engine.terminate()
        try:
            engine.wait(20)
        except subprocess.TimeoutExpired:
            engine.kill()
            engine.wait(10)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False
