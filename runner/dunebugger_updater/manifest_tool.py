"""Release tooling: `dunebugger-updater manifest validate|generate`.

    dunebugger-updater manifest validate update-manifest.yaml [--version V] [--component TYPE]
    dunebugger-updater manifest generate --component python_app --version 1.2.0 \\
        --repo marco-svitol/dunebugger dist/dunebugger-1.2.0.tar.gz --output update-manifest.yaml

`validate` applies exactly the checks a device applies (the same loader, schema and
rules as `manifest.load_manifest`) and says what a device would do with the file:
use it, ignore it (invalid: built-in procedure) or stop the update (refused).
`generate` computes the sha256 of the artifacts, fills the seed's standard steps and
checks from our own Jinja2 template (sandboxed, every value a quoted YAML string), and
validates its output before writing it.

Exit status: 0 valid / written, 2 invalid input or a manifest a device would not use.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .config import REPO
from .manifest import (
    MAX_MANIFEST_BYTES,
    ManifestError,
    ManifestInvalid,
    ManifestRefused,
    load_manifest,
    parse_document,
    problems,
    read_manifest,
)
from .versions import NotAVersion, parse_version

EXIT_OK, EXIT_BAD = 0, 2
TEMPLATE = "templates/update-manifest.yaml.j2"
COMPONENT_TYPES = ("python_app", "container")
DEFAULT_MIN_FREE_MB = {"python_app": 1000, "container": 500}

VERDICT = {
    ManifestRefused: "refused (a device stops the update)",
    ManifestInvalid: "invalid (a device ignores it and uses the built-in procedure)",
}


# --- command line --------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `manifest` verb's sub-commands (they need no device configuration)."""
    parser.set_defaults(needs_settings=False)
    actions = parser.add_subparsers(dest="manifest_action", required=True, metavar="ACTION")

    validate = actions.add_parser("validate", help="check an update-manifest.yaml as a device would")
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--version", metavar="V", help="also require this version (the release tag)")
    validate.add_argument("--component", metavar="TYPE", choices=COMPONENT_TYPES, help="also require this component type")
    validate.set_defaults(handler=run_validate, needs_settings=False)

    generate = actions.add_parser("generate", help="write a valid manifest with the artifacts' sha256")
    generate.add_argument("--component", metavar="TYPE", choices=COMPONENT_TYPES, required=True)
    generate.add_argument("--version", metavar="V", required=True, help="the release version (tag v<V>)")
    generate.add_argument("artifacts", nargs="*", metavar="ARTIFACT",
                          help="files to checksum; for a python_app the first is the release archive")
    generate.add_argument("--repo", metavar="OWNER/NAME", default=os.environ.get("GITHUB_REPOSITORY"),
                          help="repository of the release (default: $GITHUB_REPOSITORY)")
    generate.add_argument("--tag", metavar="TAG", help="release tag (default: v<version>)")
    generate.add_argument("--service-name", default="dunebugger", help="python_app: the systemd unit")
    generate.add_argument("--install-path", default="/opt/dunebugger/core", help="python_app: informational")
    generate.add_argument("--backup-path", default="/opt/dunebugger/backups", help="python_app: informational")
    generate.add_argument("--migration-script", metavar="PATH", help="python_app: script inside the release")
    generate.add_argument("--service", help="container: compose service (default: from the repository name)")
    generate.add_argument("--image", help="container: image without tag (default: ghcr.io/<repo>)")
    generate.add_argument("--health-url", metavar="URL", help="health endpoint on the device (localhost)")
    generate.add_argument("--min-remote-version", metavar="V")
    generate.add_argument("--min-free-mb", type=int, metavar="N")
    generate.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    generate.set_defaults(handler=run_generate, needs_settings=False)


def run_validate(args: argparse.Namespace, settings: object = None) -> int:
    path = Path(args.file)
    try:
        data = _read_capped(path)
        errors, manifest = check(data, version=args.version, component_type=args.component)
    except (OSError, ValueError) as exc:
        print(f"{path}: cannot check: {exc}", file=sys.stderr)
        return EXIT_BAD
    if errors:
        for verdict, message in errors:
            print(f"{path}: {verdict}: {message}", file=sys.stderr)
        return EXIT_BAD
    assert manifest is not None
    print(f"{path}: valid {manifest.component_type} manifest for version {manifest.version}")
    return EXIT_OK


def run_generate(args: argparse.Namespace, settings: object = None) -> int:
    try:
        text = generate(_request_from(args))
    except (ValueError, OSError) as exc:  # GenerateError is a ValueError
        print(f"dunebugger-updater manifest generate: {exc}", file=sys.stderr)
        return EXIT_BAD
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_OK


# --- validate ------------------------------------------------------------------------


def check(data: bytes, *, version: str | None = None, component_type: str | None = None) -> tuple[list[tuple[str, str]], Any]:
    """([(verdict, problem)], manifest or None): every problem a device would find."""
    try:
        document = parse_document(data)
    except ManifestError as exc:
        return [(VERDICT[type(exc)], str(exc))], None
    hostile, invalid = problems(document)
    errors = [(VERDICT[ManifestRefused], text) for text in hostile] + [(VERDICT[ManifestInvalid], text) for text in invalid]
    if errors:
        return errors, None
    try:
        if version is not None or component_type is not None:
            manifest = load_manifest(data, tag_version=_version(version or document.get("version", "")),
                                     component_type=component_type or document.get("component_type", ""))
        else:
            manifest = read_manifest(data)
    except ManifestError as exc:
        return [(VERDICT[type(exc)], str(exc))], None
    return [], manifest


def _version(text: str) -> Any:
    try:
        return parse_version(text)
    except NotAVersion as exc:
        raise ValueError(f"--version: {exc}") from None


def _read_capped(path: Path) -> bytes:
    with path.open("rb") as handle:
        data = handle.read(MAX_MANIFEST_BYTES + 1)
    return data


# --- generate ------------------------------------------------------------------------


class GenerateError(ValueError):
    """The request cannot give a manifest a device would use; names what is wrong."""


@dataclass(frozen=True)
class ArtifactSum:
    name: str
    sha256: str
    url: str = ""


@dataclass(frozen=True)
class GenerateRequest:
    component_type: str
    version: str
    artifacts: tuple[Path, ...] = ()
    repo: str | None = None
    tag: str | None = None
    service_name: str = "dunebugger"
    install_path: str = "/opt/dunebugger/core"
    backup_path: str = "/opt/dunebugger/backups"
    migration_script: str | None = None
    service: str | None = None
    image: str | None = None
    health_url: str | None = None
    min_remote_version: str | None = None
    min_free_mb: int | None = None


def _request_from(args: argparse.Namespace) -> GenerateRequest:
    return GenerateRequest(
        component_type=args.component, version=args.version, artifacts=tuple(Path(a) for a in args.artifacts),
        repo=args.repo or None, tag=args.tag, service_name=args.service_name, install_path=args.install_path,
        backup_path=args.backup_path, migration_script=args.migration_script, service=args.service,
        image=args.image, health_url=args.health_url, min_remote_version=args.min_remote_version,
        min_free_mb=args.min_free_mb,
    )


def generate(request: GenerateRequest) -> str:
    """The manifest text; raises GenerateError unless a device would use it as it is."""
    if request.repo is not None and not REPO.fullmatch(request.repo):
        raise GenerateError(f"--repo {request.repo!r} is not a GitHub repository (owner/name)")
    version = request.version[1:] if request.version[:1] in "vV" else request.version
    tag = request.tag or f"v{version}"
    sums = [ArtifactSum(path.name, sha256_file(path)) for path in request.artifacts]
    archive = None
    if request.component_type == "python_app" and sums:
        if not request.repo:
            raise GenerateError("--repo (or $GITHUB_REPOSITORY) is needed for the artifact's download URL")
        archive = ArtifactSum(sums[0].name, sums[0].sha256, release_asset_url(request.repo, tag, sums[0].name))
        sums = sums[1:]
    context = {
        "component_type": request.component_type,
        "version": version,
        "min_remote_version": request.min_remote_version,
        "min_free_mb": request.min_free_mb or DEFAULT_MIN_FREE_MB[request.component_type],
        "artifact": archive,
        "other_artifacts": sums,
        "service_name": request.service_name,
        "install_path": request.install_path.rstrip("/") or "/",
        "backup_path": request.backup_path.rstrip("/") or "/",
        "migration_script": request.migration_script,
        "health_url": request.health_url,
        **_container_context(request),
    }
    text = render(context)
    errors, _ = check(text.encode("utf-8"), version=version, component_type=request.component_type)
    if errors:
        raise GenerateError("the generated manifest would not be used by a device: "
                            + "; ".join(message for _, message in errors))
    return text


def _container_context(request: GenerateRequest) -> dict[str, str]:
    if request.component_type != "container":
        return {"service": "", "image": ""}
    repo_name = request.repo.rsplit("/", 1)[-1] if request.repo else ""
    service = request.service or repo_name.removeprefix("dunebugger-")
    image = request.image or (f"ghcr.io/{request.repo.lower()}" if request.repo else "")
    if not service or not image:
        raise GenerateError("a container manifest needs --service and --image (or --repo to derive them)")
    return {"service": service, "image": image}


def release_asset_url(repo: str, tag: str, name: str) -> str:
    return f"https://github.com/{quote(repo, safe='/')}/releases/download/{quote(tag, safe='')}/{quote(name, safe='')}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def render(context: dict[str, Any]) -> str:
    """Our template with `context` as plain data (the values are never template source)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined, trim_blocks=True,
                                       lstrip_blocks=True, keep_trailing_newline=True)
    environment.filters["q"] = yaml_string
    source = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return environment.from_string(source).render(context)


def yaml_string(value: Any) -> str:
    """A double-quoted YAML scalar: JSON string syntax with every non-ASCII character
    escaped, which YAML reads back unchanged (quotes, colons, '#', newlines included)."""
    return json.dumps(str(value), ensure_ascii=True)
