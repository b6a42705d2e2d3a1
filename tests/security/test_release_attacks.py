"""Hostile releases and API answers, through ComponentUpdater on a sandbox device
(dry runs: the download and its verification happen, the device is never touched).
Every attempt: refused, nothing changed, recorded in history.jsonl."""

from __future__ import annotations

import gzip
import json

import pytest

from dunebugger_updater.demo import CORE_REPO
from support.attack_kit import ASSET, Fingerprint, assert_refused, attempt, publish_raw, template_payloads

pytestmark = pytest.mark.integration

LATEST = f"/repos/{CORE_REPO}/releases/latest"


# --- tags ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lookup", "lookup_id", "statement"])
async def test_template_in_the_tag_is_refused(device, marker, kind):
    tag = "v1.1.0" + template_payloads(marker)[kind]
    publish_raw(device, tag)
    await assert_refused(device, "is not a version", markers=(marker,))


@pytest.mark.parametrize("tag", [
    "v1.1.0; touch /tmp/x", "v1.1.0$(id)", "v1.1.0`id`", "v1.1.0\n", "v1.1.0\nv9.9.9", "--help",
    "-oProxyCommand=id", "v1.1.0/../../etc", "v1.1.0+evil", "v1!2.0.0", "v" + "1" * 100,
])
async def test_tag_that_is_not_a_plain_version_is_refused(device, tag):
    publish_raw(device, tag)
    await assert_refused(device, "is not a version")


async def test_template_in_the_requested_version_is_bad_input(device, marker):
    from dunebugger_updater.errors import BadRequest

    with pytest.raises(BadRequest, match="is not a version"):
        await attempt(device, version=template_payloads(marker)["lookup"])
    assert not marker.exists()


# --- release notes, asset names, asset URLs ----------------------------------------

async def test_template_in_release_notes_arrives_as_data(device, marker):
    body = " | ".join(template_payloads(marker).values())
    publish_raw(device, "v1.1.0", body=body)
    from dunebugger_updater import ComponentUpdater

    updater = ComponentUpdater(device.settings())
    status = (await updater.check_updates(force=True))["core"]
    assert status.release_notes == body  # verbatim: data, not a template
    before = Fingerprint(device)
    result = await updater.update_component("core", dry_run=True)
    assert result.success and result.outcome == "dry_run"
    before.assert_unchanged()
    assert not marker.exists()


async def test_template_in_the_asset_name_never_matches(device, marker):
    publish_raw(device, "v1.1.0", name=ASSET + template_payloads(marker)["lookup"])
    await assert_refused(device, "has no asset 'dunebugger-1.1.0.tar.gz'", markers=(marker,))


async def test_template_in_the_asset_url_is_fetched_as_a_plain_path(device, marker):
    url = f"{device.github.url}/{template_payloads(marker)['lookup']}"
    publish_raw(device, "v1.1.0", asset_urls={ASSET: url})
    await assert_refused(device, "answered 404", markers=(marker,))


@pytest.mark.parametrize(("url", "expect"), [
    ("http://evil.example/dunebugger-1.1.0.tar.gz", "download from 'evil.example' is not allowed"),
    ("https://evil.example/dunebugger-1.1.0.tar.gz", "download from 'evil.example' is not allowed"),
    ("http://localhost:{port}/x.tar.gz", "download from 'localhost' is not allowed"),
    ("http://127.0.0.1.nip.io:{port}/x.tar.gz", "is not allowed"),
    ("file:///etc/passwd", "is not allowed"),
    ("ftp://127.0.0.1/x.tar.gz", "must use https"),
])
async def test_asset_url_outside_the_allowed_hosts_is_refused(device, url, expect):
    port = device.github.url.rsplit(":", 1)[1]
    publish_raw(device, "v1.1.0", asset_urls={ASSET: url.format(port=port)})
    await assert_refused(device, expect)
    assert not any("evil" in r.path for r in device.github.requests)


@pytest.mark.parametrize(("location", "expect"), [
    ("http://evil.example/a.tar.gz", "download from 'evil.example' is not allowed"),
    ("http://localhost:{port}/a.tar.gz", "download from 'localhost' is not allowed"),
    ("http://127.0.0.2:{port}/a.tar.gz", "download from '127.0.0.2' is not allowed"),
    ("//evil.example/a.tar.gz", "download from 'evil.example' is not allowed"),
])
async def test_redirect_to_another_host_is_refused(device, location, expect):
    port = device.github.url.rsplit(":", 1)[1]
    publish_raw(device, "v1.1.0", asset_urls={ASSET: f"{device.github.url}/hop/{ASSET}"})
    device.github.redirect(f"/hop/{ASSET}", location.format(port=port))
    await assert_refused(device, expect)


async def test_redirect_loop_is_refused(device):
    publish_raw(device, "v1.1.0", asset_urls={ASSET: f"{device.github.url}/loop"})
    device.github.redirect("/loop", f"{device.github.url}/loop")
    await assert_refused(device, "redirected more than 5 times")


async def test_redirect_on_the_same_host_is_followed_and_verified(device):
    publish_raw(device, "v1.1.0")
    real = device.github.asset_url(CORE_REPO, "v1.1.0", ASSET)
    device.github.reset()
    publish_raw(device, "v1.1.0", asset_urls={ASSET: f"{device.github.url}/hop"})
    device.github.redirect("/hop", real)
    result, _ = await attempt(device)
    assert result.success and result.details["verified"], result.message


async def test_oversized_download_is_refused(device):
    publish_raw(device, "v1.1.0", archive=b"\0" * (1024 * 1024 + 1))
    await assert_refused(device, "larger than the cap of 1048576 bytes (Content-Length:", environ={"UPDATER_MAXDOWNLOADMB": "1"})


async def test_wrong_digest_is_refused(device):
    publish_raw(device, "v1.1.0", digests={ASSET: "sha256:" + "0" * 64})
    await assert_refused(device, "sha256 mismatch")


# --- downgrade and replay -----------------------------------------------------------

async def test_latest_older_than_running_is_refused(device):
    publish_raw(device, "v0.9.0")
    await assert_refused(device, "0.9.0 is older than the running 1.0.0; update never goes back")


async def test_latest_equal_to_running_changes_nothing(device):
    publish_raw(device, "v1.0.0")
    before = Fingerprint(device)
    result, _ = await attempt(device, dry_run=False)
    assert (result.success, result.outcome) == (True, "up_to_date")
    before.assert_unchanged()


async def test_manifest_of_another_version_is_refused(device):
    publish_raw(device, "v1.1.0", manifest=b'version: "1.0.5"\ncomponent_type: "python_app"\n')
    await assert_refused(device, "the manifest says 1.0.5 but the release tag is 1.1.0")


async def test_manifest_of_another_component_type_is_refused(device):
    publish_raw(device, "v1.1.0", manifest=b'version: "1.1.0"\ncomponent_type: "container"\n')
    await assert_refused(device, "does not match the component (python_app)")


# --- hostile API answers ---------------------------------------------------------------

def _json_answer(body: bytes, **headers: str) -> tuple[int, dict[str, str], bytes]:
    return 200, {"Content-Type": "application/json", **headers}, body


@pytest.mark.parametrize(("body", "headers", "expect"), [
    (b"[" * 200_000 + b"]" * 200_000, {}, "invalid JSON"),
    (b'{"tag_name": "v1.1.0", "assets": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", {}, "invalid JSON"),
    (b" " * (5 * 1024 * 1024), {}, "larger than the cap of 4194304 bytes"),
    (gzip.compress(b" " * (64 * 1024 * 1024)), {"Content-Encoding": "gzip"}, "larger than the cap of 4194304 bytes"),
    (b"<html>not json</html>", {}, "invalid JSON"),
    (json.dumps({"tag_name": "v1.1.0", "draft": True}).encode(), {}, "is a draft"),
    (json.dumps(["not", "a", "release"]).encode(), {}, "not a release"),
    (b'{"tag_name": ' + b"9" * 5000 + b"}", {}, "invalid JSON"),
])
async def test_hostile_api_answer_is_refused(device, body, headers, expect):
    device.github.add_repo(CORE_REPO)
    status, answer_headers, data = _json_answer(body, **headers)
    device.github.canned(LATEST, status, answer_headers, data)
    await assert_refused(device, expect)


async def test_hostile_manifest_answer_size_is_refused(device):
    publish_raw(device, "v1.1.0")
    device.github.canned(f"/repos/{CORE_REPO}/contents/update-manifest.yaml", 200,
                         {"Content-Type": "application/vnd.github.raw+json", "Content-Encoding": "gzip"},
                         gzip.compress(b"#" * (8 * 1024 * 1024)))
    await assert_refused(device, "larger than the cap of 262144 bytes")
