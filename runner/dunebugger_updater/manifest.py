"""`update-manifest.yaml`: loaded safely, validated against the shipped JSON Schema,
and reduced to the few typed values the updater uses.

Two kinds of problems, treated differently (the seed keeps manifests optional):
- `ManifestInvalid`: the file is malformed (YAML syntax, not UTF-8) or breaks the
  schema's structure (unknown action or check, missing or extra field, wrong type). The
  update goes on with the built-in procedure and the result says so: an honest mistake
  or a newer manifest format must not block updates.
- `ManifestRefused`: the file is hostile or contradicts its release, and the release is
  therefore not trusted at all. The update stops; nothing is changed. Hostile means: a
  YAML alias, a nesting deeper than the cap, a duplicate key, a YAML tag outside the
  safe set (`!!python/...`), a file above the size cap, a template marker (`{{`, `{%`,
  `{#`) or a control/format character in any string, a value that breaks the strict
  pattern of its field (names, paths, image references, URLs, checksums). Contradicting
  means: other version than the tag, other component type, a migration script outside
  the release, a health URL that is not on this device.
"""

from __future__ import annotations

import json
import logging
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from packaging.version import Version

from .errors import ManifestError
from .security import is_loopback
from .versions import NotAVersion, parse_version

log = logging.getLogger(__name__)

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


@dataclass(frozen=True)
class Expected:
    """What a device knows when it reads a manifest: the release tag's version, the
    component's type and install path (None: not compared)."""

    tag_version: Version | None = None
    component_type: str | None = None
    install_path: str | None = None


def load_manifest(data: bytes, *, tag_version: Version, component_type: str, install_path: str | None = None) -> Manifest:
    """Parse and check a manifest fetched at the release whose tag is `tag_version`."""
    return _checked(data, Expected(tag_version, component_type, install_path))


if TYPE_CHECKING:
    import jsonschema

    from .config import ComponentSpec
    from .releases import Release, ReleaseClient


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # a few MB: loaded when a manifest is first checked, not at service start

    return jsonschema.Draft202012Validator(schema())


def read_manifest(data: bytes, *, install_path: str | None = None) -> Manifest:
    """Parse, screen and validate a manifest on its own (no release to compare with)."""
    return _checked(data, Expected(install_path=install_path))


def _checked(data: bytes, expected: Expected) -> Manifest:
    document = parse_document(data)
    hostile, invalid = problems(document, expected)
    if hostile:
        raise ManifestRefused("; ".join(hostile[:5]))
    if invalid:
        raise ManifestInvalid("; ".join(invalid[:5]))
    return manifest_from(document, expected.install_path)


def parse_document(data: bytes) -> Any:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestRefused(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestInvalid("the manifest is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except _HostileYaml as exc:
        raise ManifestRefused(f"YAML {exc}") from None
    except yaml.MarkedYAMLError as exc:
        raise ManifestInvalid(f"the manifest is not valid YAML: {_one_line(exc)}") from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ManifestInvalid(f"the manifest is not valid YAML: {exc}") from None


def _one_line(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's message without the quoted source lines: the problem and where."""
    mark = exc.problem_mark or exc.context_mark
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return f"{exc.problem or exc.context or 'syntax error'}{where}"


def problems(document: Any, expected: Expected = Expected()) -> tuple[list[str], list[str]]:
    """(hostile, invalid): every problem a device would find in a parsed document, all
    at once (strings, schema, and the rules that compare it with its release and the
    device), each naming its field."""
    hostile = [f"{where}: {problem}" for where, problem in _suspicious_strings(document)]
    invalid = []
    for error in sorted(_validator().iter_errors(document), key=lambda error: [str(p) for p in error.absolute_path]):
        (hostile if _injection_shaped(error) else invalid).append(_describe(error))
    if isinstance(document, dict):
        for refuse, text in _release_problems(document, expected):
            (hostile if refuse else invalid).append(text)
    return hostile, invalid


def _release_problems(document: dict[str, Any], expected: Expected) -> Iterator[tuple[bool, str]]:
    """(refused?, problem) for the rules beyond the schema; each looks only at fields
    of the right shape, so a document that also breaks the schema is still judged."""
    for field in ("version", "min_remote_version"):
        if not isinstance(document.get(field), str):
            continue
        try:
            version = parse_version(document[field])
        except NotAVersion as exc:
            yield False, f"{field}: {exc}"
            continue
        if field == "version" and expected.tag_version is not None and version != expected.tag_version:
            yield True, f"version: the manifest says {version} but the release tag is {expected.tag_version}"
    kind = document.get("component_type")
    if expected.component_type is not None and isinstance(kind, str) and kind != expected.component_type:
        yield True, f"component_type: {kind!r} does not match the component ({expected.component_type})"
    for check in _dicts(document.get("post_update_checks")):
        if check.get("type") == "health_endpoint" and isinstance(check.get("url"), str) and not _on_device(check["url"]):
            yield True, f"post_update_checks.health_endpoint.url: {check['url']!r} is not on this device (localhost)"
    for step in _dicts(document.get("update_steps")):
        script = step.get("script")
        if step.get("action") == "run_migrations" and isinstance(script, str):
            if _inside_release(script, expected.install_path) is None:
                yield True, (f"update_steps.run_migrations.script: {script!r} is outside the release"
                             + ("" if expected.install_path else " (an absolute path needs the install path)"))


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _injection_shaped(error: jsonschema.ValidationError) -> bool:
    """A value that breaks the strict shape of a name, path, image, URL or checksum, or
    an unknown action/check/type that is not even a plain identifier, is how injection
    attempts look: refuse rather than fall back. (`format_disk` is merely unknown.)"""
    if error.validator == "pattern":
        return True
    if error.validator == "enum":
        return not (isinstance(error.instance, str) and IDENTIFIER.fullmatch(error.instance))
    return False


TEMPLATE_MARKERS = ("{{", "{%", "{#")
FREE_TEXT_FIELDS = ("description",)


def _suspicious_strings(value: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Template markers anywhere; control and invisible format characters anywhere
    (line breaks and tabs only in descriptions). Keys are screened like values."""
    if isinstance(value, dict):
        for key, item in value.items():
            field = f"{where}.{key}" if where else str(key)
            if isinstance(key, str):
                yield from _string_problems(field, key, free_text=False, what="key")
            yield from _suspicious_strings(item, field)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _suspicious_strings(item, f"{where}[{index}]")
    elif isinstance(value, str):
        yield from _string_problems(where or "manifest", value, free_text=where.endswith(FREE_TEXT_FIELDS))


def _string_problems(where: str, text: str, *, free_text: bool, what: str = "value") -> Iterator[tuple[str, str]]:
    marker = next((m for m in TEMPLATE_MARKERS if m in text), None)
    if marker:
        yield where, f"{what} {_short(text)} contains the template marker {marker!r}; manifest values are data"
    allowed = "\n\t" if free_text else ""
    bad = next((ch for ch in text if ch not in allowed and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        yield where, f"{what} {_short(text)} contains the control character U+{ord(bad):04X}"


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _describe(error: jsonschema.ValidationError) -> str:
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path).lstrip(".")
    if error.validator == "additionalProperties":
        return f"{where or 'manifest'}: {error.message}"
    if error.validator == "enum" and where.endswith(("type", "action")):
        return f"{where}: unknown {where.rsplit('.', 1)[-1]} {error.instance!r}"
    return f"{where or 'manifest'}: {error.message}"


class _HostileYaml(yaml.YAMLError):
    """A YAML shape that only an attack needs; the manifest is refused, not ignored."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        super().__init__(problem + where)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader without aliases (no "billion laughs"), with a nesting limit, without
    duplicate keys (a reviewer would read one value, the updater another) and without
    any tag the safe loader does not know (`!!python/object/apply:...`)."""

    def compose_node(self, parent: Any, index: Any) -> Any:  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            raise _HostileYaml("aliases are not allowed", self.peek_event().start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise _HostileYaml(f"nesting deeper than {MAX_NESTING}", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:  # type: ignore[override]
        seen: set[str] = set()
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                if key_node.value in seen:
                    raise _HostileYaml(f"duplicate key {key_node.value!r}", key_node.start_mark)
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _refuse_tag(loader: yaml.SafeLoader, node: Any) -> Any:
    raise _HostileYaml(f"tag {node.tag!r} is not allowed", node.start_mark)


_StrictLoader.add_constructor(None, _refuse_tag)


def manifest_from(document: dict[str, Any], install_path: str | None) -> Manifest:
    """The typed values of a document that `problems` found nothing wrong with."""
    steps = {step["action"]: step for step in document.get("update_steps", [])}
    download = steps.get("download_artifact", {})
    migration = steps.get("run_migrations")
    compose = steps.get("update_compose", {})
    return Manifest(
        version=parse_version(document["version"]),
        component_type=document["component_type"],
        min_remote_version=parse_version(document["min_remote_version"]) if "min_remote_version" in document else None,
        checks=_checks(document.get("pre_update_checks", []), document.get("post_update_checks", [])),
        artifact_url=download.get("url"),
        checksum=download["checksum"].split(":", 1)[1].lower() if "checksum" in download else None,
        migration_script=_inside_release(migration["script"], install_path) if migration else None,
        image_tag=compose.get("image_tag"),
    )


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
            values.update(health_url=check["url"], health_timeout=check.get("timeout_seconds"),
                          health_expected_status=check.get("expected_status"))
        elif check["type"] == "version_check":
            values["version_check"] = True
        elif check["type"] == "container_running":
            values["container_running"] = True
    return Checks(**values)


def _on_device(url: str) -> bool:
    """A manifest may only point the device at its own health endpoints: `localhost` or
    a loopback address (not a name that merely starts with "127.")."""
    return is_loopback(urlsplit(url).hostname or "")


def _inside_release(script: str, install_path: str | None) -> str | None:
    """The script as a path relative to the new release; None when it is outside it."""
    path = PurePosixPath(script)
    if path.is_absolute():
        root = PurePosixPath(install_path) if install_path else None
        if root is None or root not in path.parents:
            return None
        path = path.relative_to(root)
    if ".." in path.parts or not path.parts:
        return None
    return str(path)


async def fetch_manifest(
    client: ReleaseClient, spec: ComponentSpec, release: Release, *, install_path: str | None = None
) -> tuple[Manifest | None, str]:
    """The release's manifest and a note for the result. An invalid one means the
    built-in procedure (the note says why); a refused one raises ManifestRefused
    naming the release."""
    data = await client.manifest(spec.name, spec.repo, release.tag)
    if data is None:
        return None, "no manifest: built-in procedure"
    try:
        manifest = load_manifest(data, tag_version=release.version, component_type=spec.type, install_path=install_path)
    except ManifestInvalid as exc:
        log.warning("%s: invalid update manifest at %s: %s", spec.name, release.tag, exc)
        return None, f"invalid manifest ({exc}): built-in procedure"
    except ManifestRefused as exc:
        raise ManifestRefused(f"the update manifest at {release.tag} is refused: {exc}") from None
    return manifest, "manifest used"
