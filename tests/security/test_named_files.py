"""Every file someone names to the updater, given a FIFO (opening one for reading waits
for a writer for ever) or `/dev/zero` (never ends): the reader refuses at once, naming
what the file is, instead of hanging a command or the service, or eating its memory.
Each reader runs in a child process bounded in time and memory, as a hang or a flood
is what is tested."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

READERS = {  # what reads a named file -> Python that reads PATH and prints what it says
    "the config file": """
        from dunebugger_updater.config import load_settings
        load_settings(PATH, environ={})""",
    "allowedSigners": """
        from dunebugger_updater.release.signatures import SignaturePolicy
        SignaturePolicy(allowed_signers=PATH).verify(Path("/etc/hostname"), b"sig", name="x")""",
    "core's VERSION file": """
        from dunebugger_updater.device.installed import read_version_file
        print(read_version_file(PATH).detail)""",
    "dockerComposePath": """
        from dunebugger_updater.device.installed import image_tag_in_compose
        print(image_tag_in_compose(PATH, "scheduler").detail)""",
    "manifest validate FILE": """
        from dunebugger_updater.cli import main
        main(["manifest", "validate", str(PATH)])""",
    "manifest generate ARTIFACT": """
        from dunebugger_updater.cli import main
        main(["manifest", "generate", "--component", "python_app", "--version", "1.0.0", "--repo", "a/b", str(PATH)])""",
    "update --from IMAGE.tar": """
        from dunebugger_updater.cli import main
        main(["update", "scheduler", "--from", str(PATH), "--dry-run"])""",
    "update --from ARCHIVE": """
        from dunebugger_updater.cli import main
        main(["update", "core", "--from", str(PATH), "--version", "1.2.0", "--sha256", "0" * 64, "--dry-run"])""",
    "fleet -i INVENTORY": """
        from dunebugger_updater.fleet.rollout import FleetTarget
        FleetTarget(PATH).checked()""",
}
CHILD = """
import resource, sys
from pathlib import Path
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
PATH = Path(sys.argv[1])
try:
{body}
except Exception as exc:
    print(f"{{type(exc).__name__}}: {{exc}}")
"""


def read_in_a_child(reader: str, path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    body = textwrap.indent(textwrap.dedent(READERS[reader]).strip(), "    ")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_") and k != "DUNEBUGGER_CONFIG"}
    environ["UPDATER_STATEPATH"] = str(cwd / "state")
    return subprocess.run([sys.executable, "-c", CHILD.format(body=body), str(path)], capture_output=True, text=True,
                          timeout=30, cwd=cwd, env=environ)


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize("kind", ["a FIFO (named pipe)", "a character device"])
def test_a_fifo_or_a_device_is_refused_at_once(tmp_path, reader, kind):
    path = Path("/dev/zero")
    if kind.startswith("a FIFO"):
        path = tmp_path / "named"
        os.mkfifo(path)
    done = read_in_a_child(reader, path, tmp_path)
    said = done.stdout + done.stderr
    assert "Traceback" not in said and "MemoryError" not in said, said[-2000:]
    assert f"{path}" in said and kind in said, said
