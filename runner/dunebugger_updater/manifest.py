"""`update-manifest.yaml`: loaded safely, validated against the shipped JSON Schema,
and reduced to the few typed values the updater uses.

Two kinds of problems, treated differently (the seed keeps manifests optional):
- `ManifestInvalid`: the file is malformed or breaks the schema. The update goes on
  with the built-in procedure and the result says so.
- `ManifestRefused`: the file is well-formed but asks for something unsafe or
  contradicts its release (other version, other component type, a script outside the
  release). The update stops; nothing is changed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import yaml
from packaging.version import Version

from .errors import ManifestError
from .versions import NotAVersion, parse_version

MAX_MANIFEST_BYTES = 256 * 1024
MAX_NESTING = 12


class ManifestInvalid(ManifestError):
    """Malformed or schema-breaking: fall back to the built-in procedure."""


class ManifestRefused(ManifestError):
    """Well-formed but unsafe or contradicting its release: stop the update."""


@dataclass(frozen=True)
class Checks:
    min_free_mb: int | None = None
    require_service_running: bool = False
    backup_max_age_hours: int | None = None
    service_active_timeout: int | None = None
    health_url: str | None = None
    health_timeout: int | None = None
    health_expected_status: int | None = None
    version_check: bool = False
    container_running: bool = False


@dataclass(frozen=True)
class Manifest:
    version: Version
    component_type: str
    min_remote_version: Version | None
    checks: Checks
    artifact_url: str | None = None
    checksum: str | None = None  # lowercase hex sha256
    migration_script: str | None = None  # relative to the release root
    image_tag: str | None = None


@cache
def schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("schemas/update-manifest.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_manifest(data: bytes, *, tag_version: Version, component_type: str, install_path: str | None = None) -> Manifest:
    """Parse and check a manifest fetched at the release whose tag is `tag_version`."""
    document = parse_document(data)
    validate_document(document)
    manifest = _typed(document, install_path)
    if manifest.version != tag_version:
        raise ManifestRefused(f"version: the manifest says {manifest.version} but the release tag is {tag_version}")
    if manifest.component_type != component_type:
        raise ManifestRefused(f"component_type: {manifest.component_type!r} does not match the component ({component_type})")
    return manifest


def parse_document(data: bytes) -> Any:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestInvalid(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestInvalid("the manifest is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ManifestInvalid(f"the manifest is not valid YAML: {exc}") from None


def validate_document(document: Any) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(document), key=lambda error: list(error.absolute_path))
    if errors:
        raise ManifestInvalid("; ".join(_describe(error) for error in errors[:5]))


def _describe(error: jsonschema.ValidationError) -> str:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties":
        return f"{where or 'manifest'}: {error.message}"
    if error.validator == "enum" and where.endswith(("type", "action")):
        return f"{where}: unknown {where.rsplit('.', 1)[-1]} {error.instance!r}"
    return f"{where or 'manifest'}: {error.message}"


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases (no "billion laughs") and with a nesting limit."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not allowed", event.start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise yaml.composer.ComposerError(None, None, f"nesting deeper than {MAX_NESTING}", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _typed(document: dict[str, Any], install_path: str | None) -> Manifest:
    steps = {step["action"]: step for step in document.get("update_steps", [])}
    download = steps.get("download_artifact", {})
    migration = steps.get("run_migrations")
    compose = steps.get("update_compose", {})
    return Manifest(
        version=_version("version", document["version"]),
        component_type=document["component_type"],
        min_remote_version=_version("min_remote_version", document["min_remote_version"])
        if "min_remote_version" in document else None,
        checks=_checks(document.get("pre_update_checks", []), document.get("post_update_checks", [])),
        artifact_url=download.get("url"),
        checksum=download["checksum"].split(":", 1)[1].lower() if "checksum" in download else None,
        migration_script=_migration_path(migration["script"], install_path) if migration else None,
        image_tag=compose.get("image_tag"),
    )


def _version(field: str, text: str) -> Version:
    try:
        return parse_version(text)
    except NotAVersion as exc:
        raise ManifestInvalid(f"{field}: {exc}") from None


def _checks(pre: list[dict[str, Any]], post: list[dict[str, Any]]) -> Checks:
    values: dict[str, Any] = {}
    for check in pre:
        if check["type"] == "disk_space":
            values["min_free_mb"] = check["minimum_mb"]
        elif check["type"] == "service_running":
            values["require_service_running"] = True
        elif check["type"] == "backup_exists":
            values["backup_max_age_hours"] = check.get("max_age_hours", 24)
    for check in post:
        if check["type"] == "service_active":
            values["service_active_timeout"] = check.get("timeout_seconds")
        elif check["type"] == "health_endpoint":
            values.update(health_url=_loopback_url(check["url"]), health_timeout=check.get("timeout_seconds"),
                          health_expected_status=check.get("expected_status"))
        elif check["type"] == "version_check":
            values["version_check"] = True
        elif check["type"] == "container_running":
            values["container_running"] = True
    return Checks(**values)


LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def _loopback_url(url: str) -> str:
    """A manifest may only point the device at its own health endpoints."""
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK_HOSTS and not host.startswith("127."):
        raise ManifestRefused(f"post_update_checks.health_endpoint.url: {url!r} is not on this device (localhost)")
    return url


def _migration_path(script: str, install_path: str | None) -> str:
    """The script as a path relative to the new release; refuse anything outside it."""
    path = PurePosixPath(script)
    if path.is_absolute():
        root = PurePosixPath(install_path) if install_path else None
        if root is None or root not in path.parents:
            raise ManifestRefused(f"update_steps.run_migrations.script: {script!r} is outside the release")
        path = path.relative_to(root)
    if ".." in path.parts or not path.parts:
        raise ManifestRefused(f"update_steps.run_migrations.script: {script!r} is outside the release")
    return str(path)
