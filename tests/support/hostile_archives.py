"""Release archives that safe extraction must refuse: each builder returns the archive
path, and HOSTILE_MEMBERS names the member the refusal must name."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from dunebugger_updater.demo.sandbox.releases import add_file, release_files

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


def _add_special(tar: tarfile.TarFile, name: str, kind: bytes, *, linkname: str = "", mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    tar.addfile(info)


def _hostile(dest_dir: str | os.PathLike[str], kind: str, version: str, add) -> Path:
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / f"hostile-{kind}-{version}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in release_files(version).items():
            add_file(tar, f"core-evil/{name}", data)
        add(tar)
    return archive


def build_absolute_path_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(dest_dir, "absolute", version, lambda tar: add_file(tar, HOSTILE_MEMBERS["absolute"], b"pwned\n"))


def build_traversal_archive(dest_dir, version: str = "9.9.9") -> Path:
    return _hostile(
        dest_dir, "traversal", version, lambda tar: add_file(tar, HOSTILE_MEMBERS["traversal"], b"pwned\n")
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
        dest_dir, "setuid", version, lambda tar: add_file(tar, HOSTILE_MEMBERS["setuid"], b"#!/bin/sh\n", 0o4755)
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


