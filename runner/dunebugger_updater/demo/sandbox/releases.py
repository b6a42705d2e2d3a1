"""Build core release tarballs and sandboxes for tests and demos.

``build_release`` makes a well-formed release of the stand-in app; the
``build_*_archive`` helpers make hostile archives that safe extraction must
refuse (each returns the archive path and records the offending member name in
``HOSTILE_MEMBERS``). ``make_sandbox`` lays out a device-like home with a plain
directory installation, so the first update also exercises the migration to the
``releases/`` + symlink layout.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterable, Mapping
from pathlib import Path

APP_SOURCE = Path(__file__).with_name("app.py")

# archive builder name -> the member name the extractor must name when refusing
HOSTILE_MEMBERS = {
    "absolute": "/tmp/dunebugger-evil",
    "traversal": "core-evil/../../evil.txt",
    "symlink": "core-evil/escape",
    "symlink_chain": "core-evil/a",
    "hardlink": "core-evil/hard",
    "device": "core-evil/null",
    "fifo": "core-evil/pipe",
    "setuid": "core-evil/suid",
}


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def release_files(
    version: str, *, health: str = "ok", requirements: Iterable[str] = (), json_version: bool = True
) -> dict[str, bytes]:
    """The file contents of a stand-in core release, keyed by relative path."""
    if json_version:
        version_text = json.dumps({"version": version, "prerelease": False, "build_type": "sandbox", "commit": "0" * 7})
    else:
        version_text = version
    files = {"app.py": APP_SOURCE.read_bytes(), "VERSION": (version_text + "\n").encode()}
    if health != "ok":
        files["HEALTH"] = (health + "\n").encode()
    requirements = list(requirements)
    if requirements:
        files["requirements.txt"] = ("\n".join(requirements) + "\n").encode()
    return files


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), mode, 1_700_000_000
    tar.addfile(info, io.BytesIO(data))


def _add_special(tar: tarfile.TarFile, name: str, kind: bytes, *, linkname: str = "", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    tar.addfile(info)


def build_release(
    dest_dir: str | os.PathLike[str],
    version: str,
    *,
    health: str = "ok",
    requirements: Iterable[str] = (),
    extra_members: Mapping[str, bytes | tuple[bytes, int]] | None = None,
    top_dir: bool = True,
    json_version: bool = True,
    omit_version: bool = False,
) -> Path:
    """Write ``dunebugger-<version>.tar.gz`` into dest_dir and return its path.

    extra_members maps a relative path to content, or to (content, mode) for
    e.g. an executable ``scripts/migrate.sh``.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"dunebugger-{version}{'-' + health if health != 'ok' else ''}.tar.gz"
    files: dict[str, bytes | tuple[bytes, int]] = dict(
        release_files(version, health=health, requirements=requirements, json_version=json_version)
    )
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
            _add_bytes(tar, prefix + name, data, mode)
    return archive


def _hostile(dest_dir: str | os.PathLike[str], kind: str, version: str, add) -> Path:
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"hostile-{kind}-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in release_files(version).items():
            _add_bytes(tar, f"core-evil/{name}", data)
        add(tar)
    return archive


def build_absolute_path_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(dest_dir, "absolute", version, lambda tar: _add_bytes(tar, HOSTILE_MEMBERS["absolute"], b"pwned\n"))


def build_traversal_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(
        dest_dir, "traversal", version, lambda tar: _add_bytes(tar, HOSTILE_MEMBERS["traversal"], b"pwned\n")
    )


def build_symlink_escape_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(
        dest_dir,
        "symlink",
        version,
        lambda tar: _add_special(tar, HOSTILE_MEMBERS["symlink"], tarfile.SYMTYPE, linkname="../../../etc"),
    )


def build_symlink_chain_archive(dest_dir, version: str = "9.9.9") -> Path:
    """Each link looks inside on its own (x/b -> .., a -> x/b/..); together a leaves."""

    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("core-evil/x")
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        _add_special(tar, "core-evil/x/b", tarfile.SYMTYPE, linkname="..")
        _add_special(tar, HOSTILE_MEMBERS["symlink_chain"], tarfile.SYMTYPE, linkname="x/b/..")

    return _hostile(dest_dir, "symlink_chain", version, add)


def build_hardlink_escape_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(
        dest_dir,
        "hardlink",
        version,
        lambda tar: _add_special(tar, HOSTILE_MEMBERS["hardlink"], tarfile.LNKTYPE, linkname="/etc/passwd"),
    )


def build_device_archive(dest_dir, version: str = "9.9.9") -> Path:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(HOSTILE_MEMBERS["device"])
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
        tar.addfile(info)

    return _hostile(dest_dir, "device", version, add)


def build_fifo_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(dest_dir, "fifo", version, lambda tar: _add_special(tar, HOSTILE_MEMBERS["fifo"], tarfile.FIFOTYPE))


def build_setuid_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(
        dest_dir, "setuid", version, lambda tar: _add_bytes(tar, HOSTILE_MEMBERS["setuid"], b"#!/bin/sh\n", 0o4755)
    )


HOSTILE_BUILDERS = {
    "absolute": build_absolute_path_archive,
    "traversal": build_traversal_archive,
    "symlink": build_symlink_escape_archive,
    "symlink_chain": build_symlink_chain_archive,
    "hardlink": build_hardlink_escape_archive,
    "device": build_device_archive,
    "fifo": build_fifo_archive,
    "setuid": build_setuid_archive,
}


def make_sandbox(
    home: str | os.PathLike[str],
    version: str,
    *,
    port: int | None = None,
    python: str = sys.executable,
    health: str = "ok",
) -> Path:
    """Install a plain-directory core of ``version`` under home and return home.

    Layout: ``home/core`` (app.py, VERSION, .venv without pip), ``home/port``,
    and empty ``home/backups``. ``home/releases/core`` is left for the playbook.
    """
    home = Path(home)
    core = home / "core"
    core.mkdir(parents=True)
    for name, data in release_files(version, health=health).items():
        (core / name).write_bytes(data)
    subprocess.run([python, "-m", "venv", "--without-pip", str(core / ".venv")], check=True)
    (home / "backups").mkdir()
    if port is not None:
        (home / "port").write_text(f"{port}\n")
    return home
