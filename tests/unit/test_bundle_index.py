"""bundle.json: read strictly (a device refuses anything off its shape), written as read."""

from __future__ import annotations

import json

import pytest

from dunebugger_updater.config import load_settings
from dunebugger_updater.release.bundle_index import BundleEntry, BundleError, archive_name, read_index, write_index

SHA = "a" * 64


def entry(**changes) -> dict:
    return {"component": "core", "type": "python_app", "tag": "v1.2.0", "version": "1.2.0",
            "archive": "dunebugger-1.2.0.tar.gz", "files": {"dunebugger-1.2.0.tar.gz": SHA}, **changes}


def index(*entries: dict, format: object = 1) -> bytes:
    return json.dumps({"format": format, "releases": list(entries)}).encode()


def test_written_index_reads_back(tmp_path):
    written = [BundleEntry("core", "python_app", "v1.2.0", "1.2.0", "dunebugger-1.2.0.tar.gz",
                           {"dunebugger-1.2.0.tar.gz": SHA, "update-manifest.yaml": "b" * 64}),
               BundleEntry("scheduler", "container", "v1.1.0", "1.1.0", "dunebugger-scheduler-1.1.0.tar",
                           {"dunebugger-scheduler-1.1.0.tar": "c" * 64})]
    path = write_index(tmp_path, written)
    assert read_index(path.read_bytes()) == written


@pytest.mark.parametrize(("data", "problem"), [
    (b"{", "bundle.json is not JSON"),
    (b"[]", "is not a bundle index of format 1"),
    (index(entry(), format=2), "is not a bundle index of format 1"),
    (json.dumps({"format": 1, "releases": {}}).encode(), "'releases' must be a list"),
    (index({**entry(), "extra": 1}), "releases[0] must hold component, type, tag, version, archive and files"),
    (index(entry(component="../core")), "releases[0].component '../core' is not a component name"),
    (index(entry(type="flatpak")), "releases[0].type 'flatpak' is not one of python_app, container"),
    (index(entry(version="1.2.0; rm -rf /")), "releases[0].version '1.2.0; rm -rf /' is not a version"),
    (index(entry(files={"../../etc/shadow": SHA})), "releases[0].files must map plain file names"),
    (index(entry(files={"core/dunebugger-1.2.0.tar.gz": SHA})), "releases[0].files must map plain file names"),
    (index(entry(files={".hidden": SHA})), "releases[0].files must map plain file names"),
    (index(entry(files={"dunebugger-1.2.0.tar.gz": "A" * 64})), "to sha256 digests (64 hex digits)"),
    (index(entry(archive="other.tar.gz")), "releases[0].archive 'other.tar.gz' is not among its files"),
    (index(entry(), entry()), "component 'core' appears twice"),
    (index(entry(tag="v9.9.9")), "releases[0].tag 'v9.9.9' and releases[0].version '1.2.0' name different releases"),
    (index(entry(version="1.2.1")), "releases[0].tag 'v1.2.0' and releases[0].version '1.2.1' name different releases"),
])
def test_an_index_off_its_shape_is_refused_naming_the_field(data, problem):
    with pytest.raises(BundleError) as refused:
        read_index(data)
    assert problem in str(refused.value)


def test_an_image_tag_may_spell_the_tag_s_version_its_own_way():
    [read] = read_index(index(entry(type="container", tag="v1.2.0", version="1.2", archive="x-1.2.tar",
                                    files={"x-1.2.tar": SHA})))
    assert (read.tag, read.version) == ("v1.2.0", "1.2")


def test_the_archive_a_bundle_holds_is_named_by_the_component_and_version():
    settings = load_settings(None, environ={})
    assert archive_name(settings.component("core"), "1.3.0-beta") == "dunebugger-1.3.0-beta.tar.gz"
    assert archive_name(settings.component("scheduler"), "1.1.0") == "dunebugger-scheduler-1.1.0.tar"
