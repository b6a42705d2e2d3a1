"""Release tooling: `dunebugger-updater manifest validate|generate`.

    dunebugger-updater manifest validate update-manifest.yaml [--config PATH] [--version V]
        [--component NAME|TYPE]
    dunebugger-updater manifest generate --component python_app --version 1.2.0 \\
        --repo marco-svitol/dunebugger dist/dunebugger-1.2.0.tar.gz --output update-manifest.yaml

`validate` applies exactly the checks a device applies (the same loader, schema and
rules as `manifest.load_manifest`), as the configured device would for the component
(its type and install path), and says what a device would do with the file: use it,
ignore it (invalid: built-in procedure) or stop the update (refused). Every problem
is reported at once, one line each.
`generate` computes the sha256 of the artifacts, fills the seed's standard steps and
checks from our own Jinja2 template (sandboxed, every value a quoted YAML string), and
validates its output before writing it.

Exit status: 0 valid / written, 2 invalid input or a manifest a device would not use.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..config import COMPONENT_TYPES, REPO, ComponentSpec, Settings
from ..errors import BadRequest, ManifestError, ManifestInvalid, ManifestRefused, os_reason
from ..files import NotRegularFile, open_regular, sha256_file
from ..versions import NotAVersion, parse_or_none, parse_version
from .manifest import (
    MAX_MANIFEST_BYTES,
    DeviceNames,
    Expected,
    Manifest,
    manifest_from,
    parse_document,
    problems,
)

EXIT_OK, EXIT_BAD = 0, 2
TEMPLATE = "templates/update-manifest.yaml.j2"
DEFAULT_MIN_FREE_MB = {"python_app": 1000, "container": 500}

VERDICT = {
    ManifestRefused: "refused (a device stops the update)",
    ManifestInvalid: "invalid (a device ignores it and uses the built-in procedure)",
}


# --- command line --------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser, config_flag: argparse.ArgumentParser) -> None:
    """The `manifest` verb's sub-commands; both read the device configuration (only to
    know how the device names things: neither touches the device)."""
    actions = parser.add_subparsers(dest="manifest_action", required=True, metavar="ACTION")

    validate = actions.add_parser(
        "validate", parents=[config_flag], help="check an update-manifest.yaml as the configured device would"
    )
    validate.add_argument("file", metavar="FILE")
    validate.add_argument("--version", metavar="V", help="also require this version (the release tag)")
    validate.add_argument(
        "--component",
        metavar="NAME|TYPE",
        help="check as this configured component would (core, scheduler, remote, ...) or as the "
        f"first one of this type ({', '.join(COMPONENT_TYPES)}); "
        "default: the first component of the manifest's component_type",
    )
    validate.set_defaults(handler=run_validate)

    generate = actions.add_parser(
        "generate",
        parents=[config_flag],
        help="write a manifest with the artifacts' sha256 that `validate` with the same configuration accepts",
    )
    generate.add_argument(
        "--component",
        metavar="NAME|TYPE",
        required=True,
        help="for this configured component (core, scheduler, remote, ...) or the first one of this type "
        f"({', '.join(COMPONENT_TYPES)}): its names, paths and image are the defaults below",
    )
    generate.add_argument("--version", metavar="V", required=True, help="the release version (tag v<V>)")
    generate.add_argument(
        "artifacts",
        nargs="*",
        metavar="ARTIFACT",
        help="files to checksum; for a python_app the first is the release archive",
    )
    generate.add_argument(
        "--repo",
        metavar="OWNER/NAME",
        help="repository of the release (default: $GITHUB_REPOSITORY, else the component's repo)",
    )
    generate.add_argument("--tag", metavar="TAG", help="release tag (default: v<version>)")
    generate.add_argument("--service-name", help="python_app: the service unit (default: serviceName)")
    generate.add_argument("--install-path", help="python_app: the installation (default: installPath)")
    generate.add_argument("--backup-path", help="python_app: where backups go (default: backupPath)")
    generate.add_argument("--migration-script", metavar="PATH", help="python_app: script inside the release")
    generate.add_argument("--service", help="container: compose service (default: the component's service)")
    generate.add_argument("--image", help="container: image without tag (default: the component's image)")
    generate.add_argument("--health-url", metavar="URL", help="health endpoint on the device (localhost)")
    generate.add_argument("--min-remote-version", metavar="V")
    generate.add_argument("--min-free-mb", type=int, metavar="N")
    generate.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    generate.set_defaults(handler=run_generate)


def run_validate(args: argparse.Namespace, settings: Settings) -> int:
    path = Path(args.file)
    data = _read_capped(path)
    spec = _component(settings, args.component, data)
    device = DeviceNames.of(spec, settings.backup_path) if spec else None
    errors, manifest = check(
        data, Expected(_checked_version(args.version), spec.type if spec else args.component, device)
    )
    for verdict, message in errors:
        print(f"{path}: {verdict}: {message}", file=sys.stderr)
    if manifest is None:
        return EXIT_BAD
    use = f"; {spec.name} on this device would use it" if spec else ""
    where = f" (install path {spec.install_path})" if spec and spec.install_path else ""
    print(f"{path}: valid {manifest.component_type} manifest for version {manifest.version}{use}{where}")
    return EXIT_OK


def run_generate(args: argparse.Namespace, settings: Settings) -> int:
    spec = _component(settings, args.component, b"")
    if spec is None:  # a type no configured component has
        raise BadRequest(f"--component {args.component!r}: no configured component is a {args.component}")
    try:
        text = generate(_request_from(args, spec, settings))
        if args.output:
            _write(Path(args.output), text)
        else:
            sys.stdout.write(text)
    except GenerateError as exc:
        print(f"dunebugger-updater manifest generate: {exc}", file=sys.stderr)
        return EXIT_BAD
    return EXIT_OK


# --- validate ------------------------------------------------------------------------


def check(data: bytes, expected: Expected | None = None) -> tuple[list[tuple[str, str]], Manifest | None]:
    """([(verdict, problem)], manifest or None): every problem a device would find, at once."""
    expected = expected or Expected()
    try:
        document = parse_document(data)
    except ManifestError as exc:
        return [(VERDICT[type(exc)], str(exc))], None
    hostile, invalid = problems(document, expected)
    errors = [(VERDICT[ManifestRefused], text) for text in hostile] + [
        (VERDICT[ManifestInvalid], text) for text in invalid
    ]
    return errors, None if errors else manifest_from(document, expected.device, data)


def _component(settings: Settings, wanted: str | None, data: bytes) -> ComponentSpec | None:
    """The configured component the check stands for: named, or the first of the
    named type, or of the manifest's own component_type (None: no such component)."""
    if wanted is not None and wanted in settings.components:
        return settings.component(wanted)
    if wanted is not None and wanted not in COMPONENT_TYPES:
        known = ", ".join([*settings.components, *COMPONENT_TYPES])
        raise BadRequest(f"--component {wanted!r} is neither a configured component nor a type (known: {known})")
    kind = wanted or _declared_type(data)
    return next((spec for spec in settings.components.values() if spec.type == kind), None)


def _declared_type(data: bytes) -> str | None:
    try:
        document = parse_document(data)
    except ManifestError:
        return None
    kind = document.get("component_type") if isinstance(document, dict) else None
    return kind if kind in COMPONENT_TYPES else None


def _checked_version(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        parse_version(text)
    except NotAVersion as exc:
        raise BadRequest(f"--version: {exc}") from None
    return text


def _read_capped(path: Path) -> bytes:
    """At most one byte more than a manifest may have: the check says it is too large."""
    try:
        with open_regular(path) as handle:
            return handle.read(MAX_MANIFEST_BYTES + 1)
    except NotRegularFile as exc:
        raise BadRequest(f"{path} is {exc.kind}: name the update-manifest.yaml file") from None
    except OSError as exc:
        raise BadRequest(f"cannot read {path}: {os_reason(exc)}") from None


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
    device: DeviceNames | None = None  # the device it is for, as `validate` checks (None: the paths above)


def _request_from(args: argparse.Namespace, spec: ComponentSpec, settings: Settings) -> GenerateRequest:
    """What the command line asks for; what it leaves out is as the configured device has it."""
    return GenerateRequest(
        component_type=spec.type,
        version=args.version,
        artifacts=tuple(Path(a) for a in args.artifacts),
        repo=args.repo or os.environ.get("GITHUB_REPOSITORY") or spec.repo,
        tag=args.tag,
        service_name=args.service_name or spec.service_name,
        install_path=args.install_path or str(spec.install_path or GenerateRequest.install_path),
        backup_path=args.backup_path or str(settings.backup_path),
        migration_script=args.migration_script,
        service=args.service or (spec.service if spec.is_container else None),
        image=args.image or (spec.image if spec.is_container else None),
        health_url=args.health_url,
        min_remote_version=args.min_remote_version,
        min_free_mb=args.min_free_mb,
        device=DeviceNames.of(spec, settings.backup_path),
    )


def generate(request: GenerateRequest) -> str:
    """The manifest text; raises GenerateError unless a device would use it as it is."""
    if request.repo is not None and not REPO.fullmatch(request.repo):
        raise GenerateError(f"--repo {request.repo!r} is not a GitHub repository (owner/name)")
    version = request.version[1:] if request.version[:1] in "vV" else request.version
    tag = request.tag or f"v{version}"
    sums = [ArtifactSum(path.name, _artifact_sha256(path)) for path in request.artifacts]
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
    device = request.device or DeviceNames(install_path=request.install_path)
    errors, _ = check(
        text.encode("utf-8"), Expected(version if parse_or_none(version) else None, request.component_type, device)
    )
    if errors:
        raise GenerateError(
            "the generated manifest would not be used by a device: " + "; ".join(message for _, message in errors)
        )
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


def _artifact_sha256(path: Path) -> str:
    try:
        return sha256_file(path)
    except OSError as exc:
        raise GenerateError(f"cannot read artifact {path}: {os_reason(exc)}") from None


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8")
    except FileNotFoundError:
        raise GenerateError(f"cannot write --output {path}: directory {path.parent} does not exist") from None
    except OSError as exc:
        raise GenerateError(f"cannot write --output {path}: {os_reason(exc)}") from None


def render(context: dict[str, Any]) -> str:
    """Our template with `context` as plain data (the values are never template source)."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(
        autoescape=False, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True
    )
    environment.filters["q"] = yaml_string
    source = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return environment.from_string(source).render(context)


def yaml_string(value: Any) -> str:
    """A double-quoted YAML scalar: JSON string syntax with every non-ASCII character
    escaped, which YAML reads back unchanged (quotes, colons, '#', newlines included)."""
    return json.dumps(str(value), ensure_ascii=True)
