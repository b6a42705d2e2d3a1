"""`update-manifest.yaml`: loaded safely, validated against the shipped JSON Schema,
and reduced to the few typed values the updater uses.

Two kinds of problems, treated differently (the seed keeps manifests optional):
- `ManifestInvalid`: the file is malformed (YAML syntax, not UTF-8) or breaks the
  schema's structure (unknown action or check, missing or extra field, wrong type). The
  update goes on with the built-in procedure and the result says so: an honest mistake
  or a newer manifest format must not block updates. Not so where signed releases are
  required: the signed manifest carries the checks, so a missing or invalid one refuses.
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
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml
from packaging.version import Version

from ..addresses import is_loopback
from ..config import COMPONENT_TYPES
from ..errors import ManifestInvalid, ManifestRefused
from ..versions import NotAVersion, parse_or_none, parse_version, without_v
from .releases import MANIFEST_FILE

log = logging.getLogger(__name__)

MAX_MANIFEST_BYTES = 256 * 1024
MAX_NESTING = 12


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

    def verification(self) -> dict[str, Any]:
        """The checks that verify the release after the switch, keyed as the playbooks'
        `dunebugger_release_checks`; only what the manifest sets."""
        values = {
            "health_url": self.health_url,
            "health_timeout_seconds": self.health_timeout,
            "health_expected_status": self.health_expected_status,
            "service_active_timeout_seconds": self.service_active_timeout,
        }
        return {name: value for name, value in values.items() if value}


@dataclass(frozen=True)
class Manifest:
    version: str  # as written, without "v"
    component_type: str
    min_remote_version: str | None  # as written, without "v"
    checks: Checks
    artifact_url: str | None = None
    checksum: str | None = None  # lowercase hex sha256
    migration_script: str | None = None  # relative to the release root
    migration_required: bool = False  # run_migrations without `optional: true`
    image_tag: str | None = None
    restart_timeout: int | None = None  # restart_service timeout_seconds: the old container's stop
    container_name: str | None = None  # container_running container_name (checked on the device)
    informational: tuple[str, ...] = ()  # fields present that only document the procedure
    source: bytes = field(default=b"", repr=False)  # the exact bytes read (what a signature covers)


@cache
def schema() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("schemas/update-manifest.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def load_manifest(data: bytes, *, tag: str, component_type: str, device: DeviceNames | None = None) -> Manifest:
    """Parse and check a manifest fetched at the release tagged `tag`,
    against the device it would update (when known)."""
    return _checked(data, Expected(tag, component_type, device))


@dataclass(frozen=True)
class Expected:
    """What a device knows when it reads a manifest: the release's tag, the component's
    type, how the device names things (None: not compared)."""

    tag: str | None = None  # the release's tag (or its version), as the release names it
    component_type: str | None = None
    device: DeviceNames | None = None


if TYPE_CHECKING:
    import jsonschema

    from ..config import ComponentSpec
    from .releases import Release, ReleaseSource


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # a few MB: loaded when a manifest is first checked, not at service start

    return jsonschema.Draft202012Validator(schema())


def read_manifest(data: bytes, *, device: DeviceNames | None = None) -> Manifest:
    """Parse, screen and validate a manifest on its own (no release to compare with)."""
    return _checked(data, Expected(device=device))


def _checked(data: bytes, expected: Expected) -> Manifest:
    document = parse_document(data)
    hostile, invalid = problems(document, expected)
    if hostile:
        raise ManifestRefused("; ".join(hostile[:5]))
    if invalid:
        raise ManifestInvalid("; ".join(invalid[:5]))
    return manifest_from(document, expected.device, data)


def parse_document(data: bytes) -> Any:
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestRefused(f"the manifest is larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ManifestInvalid("the manifest is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)
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
    invalid: list[str] = []
    for error in sorted(_validator().iter_errors(document), key=lambda error: [str(p) for p in error.absolute_path]):
        (hostile if _injection_shaped(error) else invalid).append(_describe(error))
    if isinstance(document, dict):
        for refuse, text in _release_problems(document, expected):
            (hostile if refuse else invalid).append(text)
    return hostile, invalid


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

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise _HostileYaml("aliases are not allowed", self.peek_event().start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_NESTING:
                raise _HostileYaml(f"nesting deeper than {MAX_NESTING}", self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        seen: list[Any] = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise _HostileYaml("merge keys (<<) are not allowed", key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                raise _HostileYaml("a key must be plain text", key_node.start_mark)
            # By value, not by spelling: `~` and `null`, `yes` and `true` are one key.
            key = self.construct_object(key_node)
            if key in seen or key_node.value in seen:
                raise _HostileYaml(f"duplicate key {key_node.value!r}", key_node.start_mark)
            seen += [key, key_node.value]
        return super().construct_mapping(node, deep=deep)


def _refuse_tag(loader: yaml.SafeLoader, node: Any) -> Any:
    raise _HostileYaml(f"tag {node.tag!r} is not allowed", node.start_mark)


_StrictLoader.add_constructor(None, _refuse_tag)


def manifest_from(document: dict[str, Any], device: DeviceNames | None, source: bytes) -> Manifest:
    """The typed values of a document that `problems` found nothing wrong with."""
    steps, _ = _by_kind(document.get("update_steps", []), "action", "update_steps")
    pre, _ = _by_kind(document.get("pre_update_checks", []), "type", "pre_update_checks")
    post, _ = _by_kind(document.get("post_update_checks", []), "type", "post_update_checks")
    download = steps.get("download_artifact", {})
    migration = steps.get("run_migrations")
    compose = steps.get("update_compose", {})
    return Manifest(
        version=without_v(document["version"]),
        component_type=document["component_type"],
        min_remote_version=without_v(document["min_remote_version"]) if "min_remote_version" in document else None,
        checks=_checks(pre, post),
        artifact_url=download.get("url"),
        checksum=download["checksum"].split(":", 1)[1].lower() if "checksum" in download else None,
        migration_script=_migration_path(migration["script"], device) if migration else None,
        # Naming a migration is asking for it: only `optional: true` lets a release lack it.
        migration_required=migration is not None and migration.get("optional") is not True,
        image_tag=compose.get("image_tag"),
        restart_timeout=steps.get("restart_service", {}).get("timeout_seconds"),
        container_name=post.get("container_running", {}).get("container_name"),
        informational=tuple(name for name in INFORMATIONAL if document.get(name)),
        source=source,
    )


# Fields that document a procedure the updater runs its own way; named in the result.
INFORMATIONAL = ("rollback_steps",)


def _by_kind(entries: Any, kind: str, field: str) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Steps or checks by action/type, and the refusal of every second one of a kind:
    with two, a reviewer could read one and the device act on the other. Entries of
    another shape are the schema's to report."""
    found: dict[str, dict[str, Any]] = {}
    repeated = []
    for index, entry in enumerate(entries if isinstance(entries, list) else []):
        name = entry.get(kind) if isinstance(entry, dict) else None
        if not isinstance(name, str):
            continue
        if name in found:
            repeated.append(f"{field}[{index}]: a second {name!r}; each {kind} may appear once")
        found.setdefault(name, entry)
    return found, repeated


def _release_problems(document: dict[str, Any], expected: Expected) -> Iterator[tuple[bool, str]]:
    """(refused?, problem) for the rules beyond the schema. Each looks only at values of
    the right type, so a document that also breaks the schema is judged all the same."""
    steps, repeated_steps = _by_kind(document.get("update_steps"), "action", "update_steps")
    pre, repeated_pre = _by_kind(document.get("pre_update_checks"), "type", "pre_update_checks")
    post, repeated_post = _by_kind(document.get("post_update_checks"), "type", "post_update_checks")
    for repeated in repeated_steps + repeated_pre + repeated_post:
        yield True, repeated
    versions: dict[str, Version] = {}
    for name, text in (
        ("version", document.get("version")),
        ("min_remote_version", document.get("min_remote_version")),
        ("post_update_checks.version_check.expected_version", _text(post.get("version_check"), "expected_version")),
    ):
        if isinstance(text, str):
            try:
                versions[name] = parse_version(text)
            except NotAVersion as exc:
                yield False, f"{name}: {exc}"
    version = versions.get("version")
    if version is not None and expected.tag is not None and version != parse_or_none(expected.tag):
        said, tagged = without_v(document["version"]), without_v(expected.tag)
        yield True, f"version: the manifest says {said} but the release tag is {tagged}"
    kind = document.get("component_type")
    if expected.component_type is not None and isinstance(kind, str) and kind != expected.component_type:
        yield True, f"component_type: {kind!r} does not match the component ({expected.component_type})"
    if kind in COMPONENT_TYPES:
        for text in _foreign_entries(document, kind):
            yield True, text
    url = _text(post.get("health_endpoint"), "url")
    if url is not None and not is_loopback(urlsplit(url).hostname or ""):
        # Only the device's own health endpoints: `localhost` or a loopback address
        # (not a name that merely starts with "127.").
        yield True, f"post_update_checks.health_endpoint.url: {url!r} is not on this device (localhost)"
    if version is not None:
        for text in _contradictions(document, steps, pre, post, version, expected.device):
            yield True, text


# The steps and checks after the switch that each type of component acts on. The same
# names for the other type (or a rollback's step among the update steps) would be read
# as a promise the update never keeps: refused, naming the entry.
ACTS_ON: dict[tuple[str, str], dict[str, tuple[str, ...]]] = {
    ("update_steps", "action"): {
        "container": ("backup_compose", "update_compose", "pull_image", "restart_service"),
        "python_app": (
            "download_artifact",
            "backup_installation",
            "stop_service",
            "extract_artifact",
            "install_requirements",
            "run_migrations",
            "start_service",
        ),
    },
    ("post_update_checks", "type"): {
        "container": ("container_running", "health_endpoint", "version_check"),
        "python_app": ("service_active", "health_endpoint", "version_check"),
    },
}
ROLLBACK_ACTIONS = ("restore_compose", "restore_backup")


def _foreign_entries(document: dict[str, Any], kind: str) -> Iterator[str]:
    """Every step or check of a `kind` manifest that only another type of component, or
    only a rollback, acts on."""
    for (section, key), by_type in ACTS_ON.items():
        entries = document.get(section)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            name = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(name, str) or name in by_type[kind]:
                continue  # acted on, or not even a name: the schema reports that
            owner = next((other for other, names in by_type.items() if name in names), None)
            if owner is not None:
                yield f"{section}[{index}].{key}: {name!r} applies to {owner} components, not to this {kind}"
            elif name in ROLLBACK_ACTIONS:
                yield f"{section}[{index}].{key}: {name!r} is a rollback step (rollback_steps), not an update step"


def _text(entry: dict[str, Any] | None, key: str) -> str | None:
    """entry[key] when it is text (a value of another type is the schema's to report)."""
    value = entry.get(key) if isinstance(entry, dict) else None
    return value if isinstance(value, str) else None


def _checks(pre: dict[str, dict[str, Any]], post: dict[str, dict[str, Any]]) -> Checks:
    values: dict[str, Any] = {}
    if "disk_space" in pre:
        values["min_free_mb"] = pre["disk_space"]["minimum_mb"]
    if "service_running" in pre:
        values["require_service_running"] = True
    if "backup_exists" in pre:
        values["backup_max_age_hours"] = pre["backup_exists"].get("max_age_hours", 24)
    if "service_active" in post:
        values["service_active_timeout"] = post["service_active"].get("timeout_seconds")
    if "health_endpoint" in post:
        check = post["health_endpoint"]
        values.update(
            health_url=check["url"],
            health_timeout=check.get("timeout_seconds"),
            health_expected_status=check.get("expected_status"),
        )
    values["version_check"] = "version_check" in post
    values["container_running"] = "container_running" in post
    return Checks(**values)


@dataclass(frozen=True)
class DeviceNames:
    """How the configured device names what a manifest may mention. A manifest that names
    another service, image, installation or archive contradicts the device and is refused:
    the updater acts on its own configuration, and a manifest that disagrees with it was
    written for another device (or by someone who should not be trusted)."""

    install_path: str | None = None
    backup_path: str | None = None
    service_name: str | None = None  # python_app: the service unit
    service: str | None = None  # container: the compose service
    image: str | None = None  # container: the image repository, without tag
    asset_pattern: str | None = None  # python_app: the release archive, with {version}

    @classmethod
    def of(cls, spec: ComponentSpec, backup_path: Path | str | None = None) -> DeviceNames:
        if spec.is_container:
            return cls(backup_path=str(backup_path) if backup_path else None, service=spec.service, image=spec.image)
        return cls(
            install_path=str(spec.install_path) if spec.install_path else None,
            backup_path=str(backup_path) if backup_path else None,
            service_name=spec.service_name,
            asset_pattern=spec.asset_pattern,
        )


def _contradictions(
    document: dict[str, Any],
    steps: dict[str, dict[str, Any]],
    pre: dict[str, dict[str, Any]],
    post: dict[str, dict[str, Any]],
    version: Version,
    device: DeviceNames | None,
) -> Iterator[str]:
    """Every value that disagrees with the release or with the device, one line each."""
    version_text = without_v(document["version"])  # as the manifest names it (a version: text)
    script = _text(steps.get("run_migrations"), "script")
    if script is not None and _migration_path(script, device) is None:
        yield f"update_steps.run_migrations.script: {script!r} is outside the release"
    expected = _text(post.get("version_check"), "expected_version")
    if expected is not None and parse_or_none(expected) not in (None, version):  # no version at all: invalid
        yield (
            f"post_update_checks.version_check.expected_version: {expected!r} is not the release's version "
            f"{version_text}"
        )
    if device is None:
        return
    named = {  # field -> (value in the manifest, what the device calls it)
        "pre_update_checks.service_running.service_name": (
            _text(pre.get("service_running"), "service_name"),
            device.service_name or device.service,
        ),
        "post_update_checks.service_active.service_name": (
            _text(post.get("service_active"), "service_name"),
            device.service_name,
        ),
        "update_steps.stop_service.service_name": (
            _text(steps.get("stop_service"), "service_name"),
            device.service_name,
        ),
        "update_steps.start_service.service_name": (
            _text(steps.get("start_service"), "service_name"),
            device.service_name,
        ),
        "update_steps.update_compose.service": (_text(steps.get("update_compose"), "service"), device.service),
        "update_steps.restart_service.service": (_text(steps.get("restart_service"), "service"), device.service),
        "update_steps.backup_installation.source": (
            _text(steps.get("backup_installation"), "source"),
            device.install_path,
        ),
        "update_steps.extract_artifact.destination": (
            _text(steps.get("extract_artifact"), "destination"),
            device.install_path,
        ),
    }
    for name, (value, own) in named.items():
        if value is not None and own is not None and value.rstrip("/") != own.rstrip("/"):
            yield f"{name}: {value!r} is not this device's {own!r}"
    yield from _artifact_contradictions(steps, version_text, device)
    yield from _image_contradictions(steps, version, version_text, device)


def _artifact_contradictions(steps: dict[str, dict[str, Any]], version_text: str, device: DeviceNames) -> Iterator[str]:
    archive = _text(steps.get("extract_artifact"), "archive")
    if archive is not None and device.asset_pattern:
        own = device.asset_pattern.replace("{version}", version_text)
        if PurePosixPath(archive).name != own:
            yield f"update_steps.extract_artifact.archive: {archive!r} is not the release archive {own!r}"
    backup = _text(steps.get("backup_installation"), "destination")
    if (
        backup is not None
        and device.backup_path
        and PurePosixPath(device.backup_path) not in PurePosixPath(backup).parents
    ):
        yield (
            f"update_steps.backup_installation.destination: {backup!r} is outside this device's "
            f"backupPath {device.backup_path!r}"
        )
    requirements = _text(steps.get("install_requirements"), "requirements_file")
    if requirements is not None:
        allowed = {"requirements.txt"} | ({f"{device.install_path}/requirements.txt"} if device.install_path else set())
        if requirements not in allowed:
            yield (
                f"update_steps.install_requirements.requirements_file: {requirements!r}: only the release's own "
                "requirements.txt is installed"
            )


def _image_contradictions(
    steps: dict[str, dict[str, Any]], version: Version, version_text: str, device: DeviceNames
) -> Iterator[str]:
    image = _text(steps.get("pull_image"), "image")
    if image is None or not device.image:
        return
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
    if repository != device.image:
        yield f"update_steps.pull_image.image: {image!r} is not this device's image {device.image!r}"
    if tag and tag != _text(steps.get("update_compose"), "image_tag") and not _same_version(tag, version):
        yield f"update_steps.pull_image.image: tag {tag!r} is not release {version_text}"


def _same_version(tag: str, version: Version) -> bool:
    try:
        return parse_version(tag) == version
    except NotAVersion:
        return False


def _migration_path(script: str, device: DeviceNames | None) -> str | None:
    """The script as a path relative to the new release; None when it is outside it."""
    path = PurePosixPath(script)
    if path.is_absolute():
        root = PurePosixPath(device.install_path) if device and device.install_path else None
        if root is None or root not in path.parents:
            return None
        path = path.relative_to(root)
    if ".." in path.parts or not path.parts:
        return None
    return str(path)


async def fetch_manifest(
    source: ReleaseSource,
    spec: ComponentSpec,
    release: Release,
    *,
    device: DeviceNames | None = None,
    signed: bool = False,
) -> tuple[Manifest | None, str]:
    """The release's manifest and a note for the result (see `release_manifest`)."""
    data = await source.manifest(spec.name, spec.repo, release.tag)
    return release_manifest(data, spec, release, device=device, signed=signed)


def release_manifest(
    data: bytes | None,
    spec: ComponentSpec,
    release: Release,
    *,
    device: DeviceNames | None = None,
    signed: bool = False,
) -> tuple[Manifest | None, str]:
    """The manifest `data` of `release` (None: it has none) and a note for the result.
    An invalid one means the built-in procedure (the note says why); a refused one
    raises ManifestRefused naming the release. On a device that requires signed
    releases (`signed`) the signed manifest carries the release's checks: a missing or
    invalid one is refused too, or whoever may remove or spoil it would drop them."""
    if data is None:
        if signed:
            raise ManifestRefused(f"no {MANIFEST_FILE} comes with {_origin(release)}{_SIGNED_NEEDS_ONE}")
        return None, "no manifest: built-in procedure"
    try:
        manifest = load_manifest(data, tag=release.tag, component_type=spec.type, device=device)
    except ManifestInvalid as exc:
        if signed:
            raise ManifestRefused(
                f"the {MANIFEST_FILE} that comes with {_origin(release)} is invalid ({exc}){_SIGNED_NEEDS_ONE}"
            ) from None
        log.warning("%s: invalid update manifest at %s: %s", spec.name, release.tag, exc)
        return None, f"invalid manifest ({exc}): built-in procedure"
    except ManifestRefused as exc:
        raise ManifestRefused(f"the update manifest at {release.tag} is refused: {exc}") from None
    return manifest, manifest_note(manifest)


_SIGNED_NEEDS_ONE = (
    ", and this device requires signed releases (signingPublicKey/allowedSigners), whose signed manifest "
    f"carries the checks: the release needs a valid {MANIFEST_FILE} and {MANIFEST_FILE}.sig"
)


def _origin(release: Release) -> str:
    """Where the release is: its tag at GitHub, or the file or bundle on this device."""
    return release.files.where if release.files else f"release {release.tag}"


def manifest_note(manifest: Manifest) -> str:
    """What the result says about a manifest in use, naming fields it does not act on."""
    if not manifest.informational:
        return "manifest used"
    return (
        f"manifest used; {', '.join(manifest.informational)}: informational only "
        "(the updater's own rollback runs, verified with the restored release's checks)"
    )
