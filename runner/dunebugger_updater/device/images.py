"""The container engine's images, through the `docker` CLI (argv lists, the minimal
child environment, every call bounded in time): loading an image archive onto a device
without a registry, and pulling and saving one where a bundle is made."""

from __future__ import annotations

import subprocess
from pathlib import Path

from ..environment import child_environment
from ..errors import DownloadError

ENGINE_TIMEOUT_SECONDS = 600  # one image load, pull or save; an image can be large


def load(archive: Path, image_id: str, reference: str) -> None:
    """Load a `docker save` archive and name the image it holds `reference`
    (repository:tag). `image_id` is the id read from the archive: the engine must hold
    exactly that image afterwards."""
    _docker("load", "--input", str(archive.resolve()), what=f"load {archive}")
    loaded = _docker("image", "inspect", "--format", "{{.Id}}", image_id, what=f"find the image of {archive}")
    if loaded != image_id:
        raise DownloadError(f"{archive}: the engine loaded {loaded or 'nothing'}, not the archive's image {image_id}")
    _docker("tag", image_id, reference, what=f"tag the image of {archive} as {reference}")


def pull(reference: str) -> None:
    _docker("pull", "--quiet", reference, what=f"pull {reference}")


def save(reference: str, archive: Path) -> None:
    _docker("save", "--output", str(archive), reference, what=f"save {reference}")


def _docker(*args: str, what: str) -> str:
    """The command's stdout; DownloadError naming `what` and the engine's answer."""
    try:
        done = subprocess.run(
            ["docker", *args],
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT_SECONDS,
            env=child_environment(),
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DownloadError(f"cannot {what}: the engine did not finish within {ENGINE_TIMEOUT_SECONDS} s") from None
    except OSError as exc:
        raise DownloadError(f"cannot {what}: cannot run docker: {exc.strerror or exc}") from None
    if done.returncode != 0:
        answer = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        raise DownloadError(f"cannot {what}: {answer}")
    return done.stdout.strip()
