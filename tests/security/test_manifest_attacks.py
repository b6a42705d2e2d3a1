"""Hostile update manifests. In-process for every string field of the schema, end to
end (dry runs through ComponentUpdater on the sandbox device) for each kind of attack.

Policy under test: a malformed manifest (YAML syntax, unknown action) is ignored and the
built-in procedure runs; a hostile one (injection-shaped value, template marker, control
character, alias, deep nesting, unknown YAML tag, duplicate key, oversized) is refused,
and the update stops."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from dunebugger_updater.errors import ManifestInvalid, ManifestRefused
from dunebugger_updater.release.manifest import DeviceNames, load_manifest
from support.attack_kit import assert_refused, attempt, publish_raw, template_payloads

SHA = "sha256:" + "a" * 64

# Two manifests that together use every string field of the schema: one of each
# component type (a step or check the other type acts on is refused, see
# test_a_step_or_check_of_the_other_component_type_is_refused).
FULL_CORE: dict[str, Any] = {
    "version": "1.1.0",
    "component_type": "python_app",
    "min_remote_version": "1.0.0",
    "pre_update_checks": [
        {"type": "disk_space", "minimum_mb": 10, "description": "space"},
        {"type": "backup_exists", "max_age_hours": 24, "description": "backup"},
        {"type": "service_running", "service_name": "dunebugger", "description": "running"},
    ],
    "update_steps": [
        {"action": "download_artifact", "url": "https://github.com/marco-svitol/dunebugger/releases/download/v1.1.0/a.tar.gz",
         "checksum": SHA, "description": "d"},
        {"action": "backup_installation", "source": "/opt/dunebugger/core", "destination": "/opt/dunebugger/backups/x",
         "description": "d"},
        {"action": "stop_service", "service_name": "dunebugger", "description": "d"},
        {"action": "extract_artifact", "archive": "a.tar.gz", "destination": "/opt/dunebugger/core", "description": "d"},
        {"action": "install_requirements", "requirements_file": "/opt/dunebugger/core/requirements.txt", "description": "d"},
        {"action": "run_migrations", "script": "scripts/migrate.sh", "optional": True, "description": "d"},
        {"action": "start_service", "service_name": "dunebugger", "description": "d"},
    ],
    "post_update_checks": [
        {"type": "service_active", "service_name": "dunebugger", "timeout_seconds": 30, "description": "d"},
        {"type": "health_endpoint", "url": "http://localhost:5000/health", "timeout_seconds": 60,
         "expected_status": 200, "description": "d"},
        {"type": "version_check", "expected_version": "1.1.0", "description": "d"},
    ],
    "rollback_steps": [
        {"action": "restore_backup", "source": "latest_backup", "destination": "/opt/dunebugger/core", "description": "d"},
    ],
}
FULL_CONTAINER: dict[str, Any] = {
    "version": "1.1.0",
    "component_type": "container",
    "update_steps": [
        {"action": "backup_compose", "description": "d"},
        {"action": "update_compose", "service": "scheduler", "image_tag": "1.1.0", "description": "d"},
        {"action": "pull_image", "image": "ghcr.io/marco-svitol/dunebugger-scheduler:1.1.0", "description": "d"},
        {"action": "restart_service", "service": "scheduler", "timeout_seconds": 30, "description": "d"},
    ],
    "post_update_checks": [
        {"type": "container_running", "container_name": "scheduler", "description": "d"},
    ],
    "rollback_steps": [{"action": "restore_compose", "description": "d"}],
}
FULL = {"python_app": FULL_CORE, "container": FULL_CONTAINER}
# Steps' and checks' positions the tests below name
DOWNLOAD, BACKUP, STOP, MIGRATE = 0, 1, 2, 5
HEALTH = 1


def string_fields(value: Any, path: tuple = ()) -> Iterator[tuple]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from string_fields(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from string_fields(item, (*path, index))
    elif isinstance(value, str):
        yield path


FIELDS = [(kind, path) for kind, document in FULL.items() for path in string_fields(document)]
# One field per key name (service_name, image, script, url, ...): the keys share the
# schema's definitions, so the full grid of payloads runs on these; the template
# payload alone runs on every field.
FIELD_PER_KEY = list({path[-1]: (kind, path) for kind, path in reversed(FIELDS)}.values())


def with_value(path: tuple, value: Any, kind: str = "python_app") -> dict[str, Any]:
    document = copy.deepcopy(FULL[kind])
    target = document
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return document


def dump(document: Any) -> bytes:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode()


def load(data: bytes, kind: str = "python_app"):
    return load_manifest(data, tag="v1.1.0", component_type=kind)


def field_name(path: tuple) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def test_the_full_manifests_are_valid():
    manifest = load(dump(FULL_CORE))
    assert manifest.checksum == "a" * 64 and manifest.migration_script == "scripts/migrate.sh"
    container = load(dump(FULL_CONTAINER), "container")
    assert (container.image_tag, container.restart_timeout, container.container_name) == ("1.1.0", 30, "scheduler")
    assert len(FIELDS) > 30


INJECTIONS = {
    "jinja_expression": "{{ lookup('pipe','id') }}",
    "jinja_statement": "{% for x in range(3) %}x{% endfor %}",
    "jinja_comment": "{# x #}",
    "shell": "dunebugger; touch /tmp/pwned",
    "substitution": "$(touch /tmp/pwned)",
    "backticks": "`id`",
    "option": "--help",
    "ssh_option": "-oProxyCommand=touch /tmp/pwned",
    "newline": "dunebugger\nExecStart=/bin/sh",
    "trailing_newline": "dunebugger\n",
    "nul": "dunebugger\0",
    "bidi": "dunebugger\u202e",
    "space": "dune bugger",
}


FREE_TEXT_ALLOWED = ("shell", "substitution", "backticks", "option", "ssh_option", "space", "trailing_newline",
                     "newline")  # descriptions are free text nothing reads: only markers and control characters


@pytest.mark.parametrize("kind", sorted(INJECTIONS))
def test_injection_in_any_string_field_is_refused(kind):
    """Each payload in one field per key name; the template payload in every field."""
    accepted = []
    for component_type, path in FIELDS if kind == "jinja_expression" else FIELD_PER_KEY:
        value = INJECTIONS[kind]
        if path[-1] == "description" and kind in FREE_TEXT_ALLOWED:
            continue
        if path[-1] == "url" and kind == "option":
            value = "http://localhost/--help"  # a URL path may hold '--help': it is never an argument
            load(dump(with_value(path, value, component_type)), component_type)
            continue
        try:
            load(dump(with_value(path, value, component_type)), component_type)
        except ManifestRefused as exc:
            assert field_name(path) in str(exc), exc
        else:
            accepted.append(field_name(path))
    assert not accepted, f"{kind!r} accepted in {accepted}"


@pytest.mark.parametrize(("text", "expect"), [
    (b'a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "aliases are not allowed"),
    (b"version: " + b"[" * 40 + b"]" * 40 + b"\n", "nesting deeper than 12"),
    (b"version:\n" + b"".join(b"  " * i + b"- \n" for i in range(1, 30)), "nesting deeper than 12"),
    (b'!!python/object/apply:os.system ["touch /tmp/pwned"]\n', "YAML tag"),
    (b'version: !!python/name:os.system ""\ncomponent_type: python_app\n', "YAML tag"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nversion: "9.9.9"\n', "duplicate key 'version'"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\n#' + b"x" * 300_000 + b"\n", "larger than 262144"),
    # A reviewer reads one value, the device would act on another:
    (b'version: "1.1.0"\ncomponent_type: "python_app"\n<<: {version: "9.9.9"}\n', "merge keys"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\npost_update_checks:\n  - type: health_endpoint\n'
     b'    <<: {url: "http://localhost/x"}\n', "merge keys"),
    (b'~: a\nnull: b\nversion: "1.1.0"\ncomponent_type: "python_app"\n', "duplicate key 'null'"),
    (b'yes: a\ntrue: b\nversion: "1.1.0"\ncomponent_type: "python_app"\n', "duplicate key 'true'"),
    (b'version: "1.1.0"\n"versio\\x6e": "9.9.9"\ncomponent_type: "python_app"\n', "duplicate key"),
    (b'? [a, b]\n: 1\nversion: "1.1.0"\ncomponent_type: "python_app"\n', "a key must be plain text"),
])
def test_hostile_yaml_is_refused(text, expect):
    with pytest.raises(ManifestRefused, match=expect):
        load(text)


@pytest.mark.parametrize(("text", "expect"), [
    (b"version: [unclosed", "not valid YAML"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n  - action: "format_disk"\n', "unknown action"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nextra: 1\n', "Additional properties"),
])
def test_malformed_manifest_is_ignored_not_refused(text, expect):
    with pytest.raises(ManifestInvalid, match=expect):
        load(text)


@pytest.mark.parametrize(("script", "expect"), [
    ("/usr/bin/evil.sh", "outside the release"),
    ("../../../usr/bin/evil.sh", "outside the release"),
    ("scripts/../../evil.sh", "outside the release"),
    ("/opt/dunebugger/core/../evil.sh", "outside the release"),
    ("-rf", "does not match"),
])
def test_migration_script_outside_the_release_is_refused(script, expect):
    document = with_value(("update_steps", MIGRATE, "script"), script)
    with pytest.raises(ManifestRefused, match=expect):
        load_manifest(dump(document), tag="v1.1.0", component_type="python_app",
                      device=DeviceNames(install_path="/opt/dunebugger/core"))


@pytest.mark.parametrize("url", [
    "http://example.com/health", "http://127.0.0.1.nip.io/health", "http://127.evil.example/health",
    "http://0.0.0.0:5000/health", "http://10.0.0.1/health", "http://localhost.evil.example/health",
    "http://localhost:5000@evil.example/health",
])
def test_health_url_off_the_device_is_refused(url):
    with pytest.raises(ManifestRefused):
        load(dump(with_value(("post_update_checks", HEALTH, "url"), url)))


@pytest.mark.parametrize("url", ["http://localhost:5000/health", "http://127.0.0.1/h",
                                 "http://127.1.2.3/h"])
def test_health_url_on_the_device_is_accepted(url):
    assert load(dump(with_value(("post_update_checks", HEALTH, "url"), url))).checks.health_url == url


@pytest.mark.parametrize(("kind", "entry", "expect"), [
    ("python_app", ("update_steps", {"action": "restart_service", "service": "dunebugger", "timeout_seconds": 30}),
     "update_steps[7].action: 'restart_service' applies to container components, not to this python_app"),
    ("python_app", ("update_steps", {"action": "update_compose", "image_tag": "1.1.0"}),
     "update_steps[7].action: 'update_compose' applies to container components"),
    ("python_app", ("post_update_checks", {"type": "container_running", "container_name": "scheduler"}),
     "post_update_checks[3].type: 'container_running' applies to container components, not to this python_app"),
    ("python_app", ("update_steps", {"action": "restore_backup"}),
     "update_steps[7].action: 'restore_backup' is a rollback step (rollback_steps), not an update step"),
    ("container", ("update_steps", {"action": "run_migrations", "script": "scripts/migrate.sh"}),
     "update_steps[4].action: 'run_migrations' applies to python_app components, not to this container"),
    ("container", ("update_steps", {"action": "download_artifact", "url": "https://github.com/x/y/a.tar.gz"}),
     "update_steps[4].action: 'download_artifact' applies to python_app components"),
    ("container", ("post_update_checks", {"type": "service_active", "timeout_seconds": 30}),
     "post_update_checks[1].type: 'service_active' applies to python_app components, not to this container"),
])
def test_a_step_or_check_of_the_other_component_type_is_refused(kind, entry, expect):
    """Every field acts or refuses: the other type's steps and checks would be read, and
    silently not done."""
    document = copy.deepcopy(FULL[kind])
    section, added = entry
    document[section].append(added)
    with pytest.raises(ManifestRefused) as refused:
        load(dump(document), kind)
    assert expect in str(refused.value)


# --- end to end: dry runs through ComponentUpdater ------------------------------------

@pytest.mark.integration
@pytest.mark.parametrize(("path", "kind"), [
    (("update_steps", STOP, "service_name"), "jinja_expression"),
    (("update_steps", 3, "archive"), "shell"),
    (("update_steps", 4, "requirements_file"), "jinja_statement"),
    (("update_steps", MIGRATE, "script"), "ssh_option"),
    (("update_steps", DOWNLOAD, "url"), "jinja_expression"),
    (("post_update_checks", HEALTH, "url"), "newline"),
    (("update_steps", BACKUP, "destination"), "substitution"),
    (("pre_update_checks", 0, "description"), "jinja_expression"),
])
async def test_hostile_manifest_stops_the_update(device, marker, path, kind):
    value = INJECTIONS[kind]
    if kind == "jinja_expression":
        value = template_payloads(marker)["lookup"]
    publish_raw(device, "v1.1.0", manifest=dump(with_value(path, value)))
    result = await assert_refused(device, ("the update manifest at v1.1.0 is refused", field_name(path)),
                                  markers=(marker,))
    assert result.to_version is None  # refused while planning: no download happened
    assert not any("/releases/download/" in r.path for r in device.github.requests)


@pytest.mark.integration
@pytest.mark.parametrize(("text", "expect"), [
    (b'a: &a ["lol","lol"]\nb: &b [*a,*a]\nc: [*b,*b]\n', "aliases are not allowed"),
    (b"version: " + b"[" * 40 + b"]" * 40 + b"\n", "nesting deeper than 12"),
    (b'!!python/object/apply:os.system ["touch /tmp/pwned"]\n', "is not allowed"),
    (b'version: "1.1.0"\ncomponent_type: "python_app"\nversion: "9.9.9"\n', "duplicate key"),
])
async def test_hostile_yaml_stops_the_update(device, text, expect):
    publish_raw(device, "v1.1.0", manifest=text)
    await assert_refused(device, expect)


@pytest.mark.integration
async def test_migration_script_outside_the_release_stops_the_update(device):
    publish_raw(device, "v1.1.0", manifest=dump(with_value(("update_steps", MIGRATE, "script"), "../../bin/evil.sh")))
    await assert_refused(device, "update_steps.run_migrations.script: '../../bin/evil.sh' is outside the release")


@pytest.mark.integration
async def test_malformed_manifest_falls_back_to_the_built_in_procedure(device):
    publish_raw(device, "v1.1.0", manifest=b"version: [unclosed")
    result, _ = await attempt(device)
    assert result.success and result.outcome == "dry_run"
    assert result.manifest.startswith("invalid manifest (the manifest is not valid YAML")


@pytest.mark.integration
async def test_a_step_of_the_other_component_type_stops_the_update(device):
    manifest = (b'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n'
                b'  - action: "restart_service"\n    service: "dunebugger"\n    timeout_seconds: 30\n')
    publish_raw(device, "v1.1.0", manifest=manifest)
    await assert_refused(device, ("the update manifest at v1.1.0 is refused", "update_steps[0].action: "
                                  "'restart_service' applies to container components, not to this python_app"))


@pytest.mark.integration
@pytest.mark.parametrize(("compose", "note"), [
    (None, "min_remote_version 1.0.0 not checked: the version of remote is unknown (not installed ("),
    ("services:\n  remote:\n    image: ghcr.io/marco-svitol/dunebugger-remote:latest\n",
     "min_remote_version 1.0.0 not checked: remote runs 'latest', not a version"),
], ids=["no-remote", "remote-without-a-version"])
async def test_min_remote_version_that_holds_nothing_back_is_named_in_the_result(device, compose, note):
    if compose:
        (device.home / "docker-compose.yml").write_text(compose)
    publish_raw(device, "v1.1.0", manifest=b'version: "1.1.0"\ncomponent_type: "python_app"\nmin_remote_version: "v1.0.0"\n')
    result, _ = await attempt(device)
    assert (result.success, result.outcome) == (True, "dry_run"), result.message
    assert result.manifest.startswith(f"manifest used; {note}"), result.manifest


@pytest.mark.integration
async def test_min_remote_version_is_named_as_the_release_names_it(device):
    (device.home / "docker-compose.yml").write_text(
        "services:\n  remote:\n    image: ghcr.io/marco-svitol/dunebugger-remote:1.0.0\n")
    publish_raw(device, "v1.1.0",
                manifest=b'version: "1.1.0"\ncomponent_type: "python_app"\nmin_remote_version: "2.0.0-beta"\n')
    await assert_refused(device, "this release needs remote 2.0.0-beta or newer (running 1.0.0): update remote first")
