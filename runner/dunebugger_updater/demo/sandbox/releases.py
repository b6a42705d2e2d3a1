"""Build core release tarballs and sandboxes for the demo and the tests.

``build_release`` makes a well-formed release of the stand-in app. ``make_sandbox``
lays out a device-like home with a plain directory installation, so the first update
also exercises the migration to the ``releases/`` + symlink layout.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

APP_SOURCE = Path(__file__).with_name("app.py")


def release_files(version: str, *, health: str = "ok", requirements: Iterable[str] = ()) -> dict[str, bytes]:
    """The file contents of a stand-in core release, keyed by relative path."""
    version_text = json.dumps({"version": version, "prerelease": False, "build_type": "sandbox", "commit": "0" * 7})
    files = {"app.py": APP_SOURCE.read_bytes(), "VERSION": (version_text + "\n").encode()}
    if health != "ok":
        files["HEALTH"] = (health + "\n").encode()
    requirements = list(requirements)
    if requirements:
        files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    return files


def add_file(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """A regular file member of `data`, with `mode` and a fixed mtime."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def build_release(
    dest_dir: str | os.PathLike[str],
    version: str,
    *,
    health: str = "ok",
    requirements: Iterable[str] = (),
    extra_members: Mapping[str, bytes | tuple[bytes, int]] | None = None,
    top_dir: bool = True,
    omit_version: bool = False,
) -> Path:
    """Write ``dunebugger-<version>.tar.gz`` into dest_dir and return its path.

    extra_members maps a relative path to content, or to (content, mode) for
    e.g. an executable ``scripts/migrate.sh``.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"dunebugger-{version}{'-' + health if health != 'ok' else ''}.tar.gz"
    files: dict[str, bytes | tuple[bytes, int]] = dict(release_files(version, health=health, requirements=requirements))
    if omit_version:
        del files["VERSION"]
    files.update(extra_members or {})
    prefix = f"dunebugger-{version}/" if top_dir else ""
    with tarfile.open(archive, "w:gz") as tar:
        if top_dir:
            info = tarfile.TarInfo(prefix.rstrip("/"))
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name, content in sorted(files.items()):
            data, mode = content if isinstance(content, tuple) else (content, 0o644)
            add_file(tar, prefix + name, data, mode)
    return archive


def make_sandbox(home: str | os.PathLike[str], version: str, *, port: int | None = None) -> Path:
    """Install a plain-directory core of ``version`` under home and return home.

    Layout: ``home/core`` (app.py, VERSION, .venv without pip), ``home/port``,
    and empty ``home/backups``. ``home/releases/core`` is left for the playbook.
    """
    home = Path(home)
    core = home / "core"
    core.mkdir(parents=True)
    for name, data in release_files(version).items():
        (core / name).write_bytes(data)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(core / ".venv")], check=True)
    (home / "backups").mkdir()
    if port is not None:
        (home / "port").write_text(f"{port}\n")
    return home
