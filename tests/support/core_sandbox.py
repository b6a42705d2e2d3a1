"""A sandbox for the playbooks run by hand (test_core_playbooks.py, test_ansible_floor.py).

A Sandbox is a device-like home directory in tmp_path (plain-directory core 1.0.0,
backups dir, port file) served by the stand-in app under the ``command`` service
manager (appctl), plus a way to run the real playbooks against it with
``ansible-playbook`` exactly as an operator would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from dunebugger_updater.demo import free_port
from dunebugger_updater.demo.sandbox import releases
from support.fingerprint import sha256_file, tree_fingerprint

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventory" / "localhost.yml"
ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")
ANSIBLE = Path(sys.executable).with_name("ansible")


def run_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(ROOT / "runner"),
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return env


def run_module(module: str, args: dict) -> dict:
    """One module of the roles run on localhost as Ansible runs it (ad hoc, with the
    roles' module_utils); its result."""
    library = ":".join(str(path) for path in sorted(ROOT.glob("roles/*/library")))
    env = {**os.environ, "ANSIBLE_LIBRARY": library,
           "ANSIBLE_MODULE_UTILS": str(ROOT / "roles" / "core_common" / "module_utils"),
           "ANSIBLE_LOAD_CALLBACK_PLUGINS": "1", "ANSIBLE_STDOUT_CALLBACK": "json", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run([str(ANSIBLE), "localhost", "-c", "local", "-m", module, "-a", json.dumps(args)],
                          env=env, capture_output=True, text=True, timeout=120)
    return json.loads(done.stdout)["plays"][0]["tasks"][0]["hosts"]["localhost"]


@dataclass
class Result:
    rc: int
    output: str
    seconds: float

    def recap(self) -> dict[str, int]:
        line = next(text for text in self.output.splitlines() if text.startswith("localhost ") and "ok=" in text)
        return {k: int(v) for k, v in (item.split("=") for item in line.split(":", 1)[1].split())}


@dataclass
class Sandbox:
    home: Path
    dist: Path
    port: int
    runs: int = field(default=0)
    ansible_playbook: Path = ANSIBLE_PLAYBOOK  # another ansible-core (the oldest supported) runs them too

    @property
    def core(self) -> Path:
        return self.home / "core"

    @property
    def releases(self) -> Path:
        return self.home / "releases" / "core"

    def appctl(self, action: str) -> list[str]:
        return [sys.executable, "-m", "dunebugger_updater.demo.sandbox.appctl", "--home", str(self.home), action]

    def base_vars(self) -> dict:
        return {
            "core_install_path": str(self.core),
            "core_backup_path": str(self.home / "backups"),
            "core_service_manager": "command",
            "core_start_command": self.appctl("start"),
            "core_stop_command": self.appctl("stop"),
            "core_status_command": self.appctl("status"),
            "core_health_url": f"http://127.0.0.1:{self.port}/health",
            "core_health_timeout_seconds": 3,
            "core_service_active_timeout_seconds": 2,
            "core_python": sys.executable,
            "core_min_free_mb": 1,
        }

    def run(self, playbook: str, *options: str, **extra) -> Result:
        self.runs += 1
        vars_file = self.dist / f"vars-{self.runs}.json"
        vars_file.write_text(json.dumps({**self.base_vars(), **extra}, indent=1))
        argv = [str(self.ansible_playbook), "-i", str(INVENTORY), str(ROOT / "playbooks" / playbook),
                "-e", f"@{vars_file}", *options]
        started = time.monotonic()
        proc = subprocess.run(argv, cwd=ROOT, env=run_env(), capture_output=True, text=True, timeout=120)
        return Result(proc.returncode, proc.stdout + proc.stderr, time.monotonic() - started)

    def update(self, version: str, archive: Path, *options: str, sha256: str | None = None, **extra) -> Result:
        return self.run("update_core.yml", *options, dunebugger_version=version, core_archive=str(archive),
                        core_archive_sha256=sha256 or sha256_file(archive), **extra)

    def rollback(self, *options: str, **extra) -> Result:
        return self.run("rollback_core.yml", *options, **extra)

    def health(self) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except OSError:
            return -1, {}

    def wait_healthy(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while self.health()[0] != 200:
            if time.monotonic() > deadline:
                raise AssertionError(f"sandbox app not healthy; log:\n{self.log()}")
            time.sleep(0.05)

    def pid(self) -> int | None:
        try:
            return int((self.home / "app.pid").read_text())
        except OSError:
            return None

    def log(self) -> str:
        try:
            return (self.home / "app.log").read_text()
        except OSError:
            return ""

    def tree_hash(self) -> str:
        """Hash of every path under home (type, mode, content or link target), except app.log."""
        return tree_fingerprint(self.home)


def start_sandbox(tmp_path: Path, version: str = "1.0.0") -> Sandbox:
    sandbox = Sandbox(home=tmp_path / "device", dist=tmp_path / "dist", port=free_port())
    sandbox.dist.mkdir()
    releases.make_sandbox(sandbox.home, version, port=sandbox.port)
    subprocess.run(sandbox.appctl("start"), env=run_env(), check=True)
    sandbox.wait_healthy()
    return sandbox


def stop_sandbox(sandbox: Sandbox) -> None:
    subprocess.run(sandbox.appctl("stop"), env=run_env(), check=False)


# A trivial project with an in-tree PEP 517 backend, so "pip wheel" works offline
# without setuptools/wheel being importable for the build.
TINY_BACKEND = '''
import base64, hashlib, zipfile
NAME, VERSION = "tinypkg", "0.1"
FILES = {"tinypkg/__init__.py": b"ANSWER = 42\\n"}
def _dist_files():
    info = f"{NAME}-{VERSION}.dist-info"
    files = dict(FILES)
    files[f"{info}/METADATA"] = f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n".encode()
    files[f"{info}/WHEEL"] = b"Wheel-Version: 1.0\\nGenerator: tiny\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    record = []
    for path, data in files.items():
        h = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={h},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\\n".join(record) + "\\n").encode()
    return files
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(f"{wheel_directory}/{name}", "w") as zf:
        for path, data in _dist_files().items():
            zf.writestr(path, data)
    return name
def get_requires_for_build_wheel(config_settings=None):
    return []
'''


def build_tiny_wheel(work: Path) -> Path:
    """pip wheel a trivial local project, offline; return the wheel directory."""
    project, wheels = work / "tinypkg", work / "wheels"
    project.mkdir(parents=True)
    (project / "tiny_backend.py").write_text(TINY_BACKEND)
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "tiny_backend"\nbackend-path = ["."]\n')
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(wheels), str(project)],
                   check=True, capture_output=True)
    return wheels
