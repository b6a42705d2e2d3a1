"""What every attack in the battery needs: payloads, a fingerprint of the device, one
assertion that says "refused, nothing changed, recorded", and hostile archives: the
builders of HOSTILE_BUILDERS (each returns the archive; HOSTILE_MEMBERS names the member
the refusal must name) and tars of any shape (write_tar)."""

from __future__ import annotations

import gzip
import importlib
import io
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import ansible.module_utils

from dunebugger_updater import ComponentUpdater
from dunebugger_updater.demo import CORE_REPO
from dunebugger_updater.demo.sandbox.releases import add_file, build_release, release_files
from dunebugger_updater.device.playbooks import ROLES_DIR
from dunebugger_updater.results import UpdateResult
from support.device import SandboxDevice

ASSET = "dunebugger-1.1.0.tar.gz"

# The extraction the device runs (core_stage's), imported as plain Python: in-process
# tests need no playbook run. Found where Ansible finds it for a run.
ansible.module_utils.__path__.append(str(ROLES_DIR / "core_common" / "module_utils"))
extraction = importlib.import_module("ansible.module_utils.dunebugger_extract")


def template_payloads(marker: Path) -> dict[str, str]:
    """Jinja2 that would leave `marker` behind (or run `id`) if anything evaluated it."""
    return {
        "lookup": f"{{{{ lookup('pipe', 'touch {marker}') }}}}",
        "lookup_id": "{{ lookup('pipe','id') }}",
        "statement": f"{{% set x = lookup('pipe', 'touch {marker}') %}}done",
        "comment": "{# hidden #}text",
    }


class Fingerprint:
    """The device before an attempt; `unchanged()` compares it with the device after."""

    def __init__(self, device: SandboxDevice) -> None:
        self.device = device
        self.tree = device.fingerprint()
        self.pid = device.app_pid()
        self.health = device.health()

    def assert_unchanged(self) -> None:
        assert self.device.fingerprint() == self.tree, "the device tree changed"
        assert self.device.app_pid() == self.pid, "the app was restarted"
        assert self.device.health() == self.health, "the app answers differently"


async def attempt(device: SandboxDevice, *, environ: dict[str, str] | None = None, dry_run: bool = True,
                  version: str | None = None, transport=None) -> tuple[UpdateResult, ComponentUpdater]:
    updater = ComponentUpdater(device.settings(environ), transport=transport)
    result = await updater.update_component("core", dry_run=dry_run, version=version)
    return result, updater


async def assert_refused(device: SandboxDevice, expect: str | tuple[str, ...], *, outcome: str = "refused",
                         markers: tuple[Path, ...] = (), **kwargs) -> UpdateResult:
    """The attempt fails with `outcome`, its message holds every `expect`, the device
    is unchanged, no marker file appeared, and history.jsonl records it."""
    before = Fingerprint(device)
    result, updater = await attempt(device, **kwargs)
    expected = (expect,) if isinstance(expect, str) else expect
    assert (result.success, result.outcome) == (False, outcome), result.message
    for text in expected:
        assert text in result.message, result.message
    assert "Nothing was changed" in result.message
    before.assert_unchanged()
    for marker in markers:
        assert not marker.exists(), f"{marker} exists: something evaluated a template"
    last = updater.get_history()[-1]
    assert (last.component, last.outcome, last.success) == ("core", outcome, False)
    assert last.message == result.message
    return result


def publish_raw(device: SandboxDevice, tag: str, *, archive: bytes | None = None, name: str = ASSET, **fields) -> None:
    """A release whose every field the test chooses (the archive defaults to a good 1.1.0)."""
    if archive is None:
        archive = build_release(device.artifacts, "1.1.0").read_bytes()
    device.github.add_release(CORE_REPO, tag, assets={name: archive, **fields.pop("assets", {})}, **fields)


# --- hostile archives -----------------------------------------------------------------


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


def gzip_bomb_tar(path: Path, *, unpacked_bytes: int, member: str = "dunebugger-1.1.0/data.bin",
                  kind: bytes = tarfile.REGTYPE) -> Path:
    """A real .tar.gz whose one member (of type `kind`) unpacks to `unpacked_bytes` of
    zeros, written in a fraction of a second: gzip members may be concatenated, so one
    compressed 64 MiB block of zeros is repeated. About 1 KiB on disk per MiB unpacked."""
    block = 64 * 1024 * 1024
    assert unpacked_bytes % block == 0
    header = io.BytesIO()
    with tarfile.open(fileobj=header, mode="w") as tar:
        info = tarfile.TarInfo(member)
        info.size, info.mode, info.type = unpacked_bytes, 0o644, kind
        tar.addfile(info)  # header only; the data follows as separate gzip members
    head = header.getvalue()[:512]
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = compressor.compress(bytes(block)) + compressor.flush()
    trailer = bytes(1024)  # the end-of-archive blocks (the data is block-aligned already)
    with path.open("wb") as handle:
        handle.write(gzip.compress(head))
        for _ in range(unpacked_bytes // block):
            handle.write(zeros)
        handle.write(gzip.compress(trailer))
    return path


@dataclass(frozen=True)
class Member:
    """One archive member, any shape a hostile archive may take."""

    kind: str  # "file", "dir", "symlink" or "hardlink"
    name: str
    target: str = ""  # of a link
    data: bytes = b""
    mode: int = 0o644


def write_tar(path: Path, members: Iterable[Member]) -> Path:
    """An uncompressed tar with exactly these members, in this order (duplicates kept)."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE}
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        for member in members:
            info = tarfile.TarInfo(member.name)
            info.type, info.linkname, info.mode = types[member.kind], member.target, member.mode
            info.size = len(member.data) if member.kind == "file" else 0
            tar.addfile(info, io.BytesIO(member.data) if member.kind == "file" else None)
    return path


def link_chain(levels: int) -> list[Member]:
    """Links that each look inside the release on their own: x/b -> .. and l1 -> x/b/..
    (which is the releases directory), then l<n> -> l<n-1>/.., one directory higher each."""
    chain = [Member("dir", "x", mode=0o755), Member("symlink", "x/b", ".."), Member("symlink", "l1", "x/b/..")]
    return chain + [Member("symlink", f"l{n}", f"l{n - 1}/..") for n in range(2, levels + 1)]


def tree_state(root: Path, *, release: Path) -> dict[str, tuple[object, ...]]:
    """Everything under root (root included) except the release and its .partial
    directory: type, mode, owner, mtime, and content or link target of each entry. The
    release's parent gains and loses the release by design, so its mtime is left out."""
    skipped = {release, release.with_name(release.name + ".partial")}
    state = {}
    for path in _walk(root, skipped):
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode):
            content: object = os.readlink(path)
        elif stat.S_ISREG(info.st_mode):
            content = path.read_bytes()
        else:
            content = None
        mtime = None if path == release.parent else info.st_mtime_ns
        state[str(path.relative_to(root))] = (info.st_mode, info.st_uid, info.st_gid, mtime, content)
    return state


def _walk(path: Path, skipped: set[Path]) -> Iterator[Path]:
    yield path
    if path.is_dir() and not path.is_symlink():
        for child in sorted(path.iterdir()):
            if child not in skipped:
                yield from _walk(child, skipped)
