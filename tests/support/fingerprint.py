"""Hashes a test compares: one of a directory tree (names, modes, link targets and
contents), so a test can say "nothing on the device changed" in one comparison, and the
sha256 of a file, as an update is told it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Collection
from pathlib import Path

ALWAYS_SKIPPED = ("app.log", "__pycache__")  # written by the running app itself


def tree_fingerprint(root: Path, *, skip_top: Collection[str] = ()) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if relative.parts[0] in skip_top or any(part in ALWAYS_SKIPPED for part in relative.parts):
            continue
        info = path.lstat()
        digest.update(f"{relative.as_posix()}\0{info.st_mode}\0".encode())
        if path.is_symlink():
            digest.update(os.readlink(path).encode())
        elif path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()
