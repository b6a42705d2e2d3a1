"""core updates on a device without internet: a release archive the operator names (with
the sha256 they typed, or its signature), and a bundle that `bundle create` made against
the loopback GitHub. The device's githubApiUrl points at a closed port, so any request
to the network would fail the update; the real playbooks run on the sandbox device."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from dunebugger_updater.bundle.maker import BundleMaker, Wanted
from dunebugger_updater.demo import free_port
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.release.signatures import NAMESPACE
from dunebugger_updater.service.server import UpdaterServer
from support.cli import run_cli, run_cli_json
from support.device import SandboxDevice

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("clean_env")]

OFFLINE = {"UPDATER_GITHUBAPIURL": "http://127.0.0.1:9"}  # nothing listens there


def history(device: SandboxDevice) -> list[dict]:
    return run_cli_json("history", config=device.config, env=OFFLINE)[1]["body"]["entries"]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def usb(tmp_path: Path) -> Path:
    """What the operator carries to the device: outside the device's tree."""
    (tmp_path / "usb").mkdir()
    return tmp_path / "usb"


def online(elsewhere: Path) -> dict[str, str]:
    """The device's configuration on a machine with internet (the loopback GitHub), with
    that machine's own statePath."""
    return {"UPDATER_STATEPATH": str(elsewhere / "online-state")}


async def make_bundle(device: SandboxDevice, directory: Path) -> Path:
    """A bundle of core made online."""
    await BundleMaker(device.settings(online(directory.parent))).create([Wanted("core")], directory)
    return directory


def test_update_and_rollback_from_a_file_with_the_typed_sha256(device, usb):
    archive = releases.build_release(usb, "1.1.0")

    status, updated = run_cli_json("update", "core", "--from", str(archive), "--sha256", sha256(archive).upper(),
                                   config=device.config, env=OFFLINE)

    assert status == 0, updated
    body = updated["body"]
    assert (body["outcome"], body["from_version"], body["to_version"]) == ("updated", "1.0.0", "1.1.0")
    assert device.health()["version"] == "1.1.0"

    status, back = run_cli_json("rollback", "core", config=device.config, env=OFFLINE)
    assert status == 0, back
    assert back["body"]["outcome"] == "rolled_back" and device.health()["version"] == "1.0.0"
    assert [(e["action"], e["outcome"]) for e in history(device)] == [("update", "updated"), ("rollback", "rolled_back")]
    assert device.github.requests == [], "nothing may ask the network"


def test_a_manifest_beside_the_file_is_used_like_one_at_the_tag(device, usb):
    archive = releases.build_release(usb, "1.1.0")
    (usb / "update-manifest.yaml").write_text(
        'version: "1.1.0"\ncomponent_type: "python_app"\npost_update_checks:\n'
        f'  - type: "health_endpoint"\n    url: "{device.health_url}"\n    timeout_seconds: 7\n'
    )

    status, dry = run_cli_json("update", "core", "--from", str(archive), "--sha256", sha256(archive), "--dry-run",
                               config=device.config, env=OFFLINE)

    assert status == 0, dry
    body = dry["body"]
    assert body["manifest"] == "manifest used"
    assert body["details"]["checks"]["health_timeout_seconds"] == 7
    assert body["details"]["file"] == str(archive) and body["details"]["sha256_source"] == "--sha256"
    assert f"copied from {archive} and verified" in body["message"]


def test_bundle_made_online_updates_a_device_offline(device, usb):
    device.publish("1.1.0", manifest=b'version: "1.1.0"\ncomponent_type: "python_app"\n')
    bundle = usb / "bundle"

    made = run_cli("bundle", "create", "--component", "core", "-o", str(bundle), config=device.config, env=online(usb))

    assert made.returncode == 0, made.stderr
    index = json.loads((bundle / "bundle.json").read_text())
    [entry] = index["releases"]
    assert (entry["component"], entry["tag"], entry["version"]) == ("core", "v1.1.0", "1.1.0")
    assert set(entry["files"]) == {"dunebugger-1.1.0.tar.gz", "update-manifest.yaml"}
    assert entry["files"]["dunebugger-1.1.0.tar.gz"] == sha256(bundle / "core" / "dunebugger-1.1.0.tar.gz")
    assert f"update core --from {bundle}" in made.stdout
    device.github.reset()

    status, updated = run_cli_json("update", "core", "--from", str(bundle), config=device.config, env=OFFLINE)

    assert status == 0, updated
    assert (updated["body"]["outcome"], updated["body"]["manifest"]) == ("updated", "manifest used")
    assert device.health()["version"] == "1.1.0"
    _, back = run_cli_json("rollback", "core", config=device.config, env=OFFLINE)
    assert back["body"]["outcome"] == "rolled_back" and device.health()["version"] == "1.0.0"
    assert device.github.requests == [], "nothing may ask the network"


# --- signatures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    for name in ("release", "other"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(directory / name)],
                       check=True)
    return {name: directory / name for name in ("release", "other")}


def sign(key: Path, path: Path, signature: Path | None = None) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", NAMESPACE, str(path)],
                   check=True, capture_output=True)
    made = Path(f"{path}.sig")
    return made.rename(signature) if signature else made


def signed_env(keys: dict[str, Path]) -> dict[str, str]:
    return {**OFFLINE, "UPDATER_SIGNINGPUBLICKEY": Path(f"{keys['release']}.pub").read_text().strip()}


PLAIN_MANIFEST = 'version: "1.1.0"\ncomponent_type: "python_app"\n'


def signed_manifest_beside(usb: Path, keys: dict[str, Path], text: str = PLAIN_MANIFEST) -> Path:
    """The release's manifest and its signature, where the operator put the archive."""
    manifest = usb / "update-manifest.yaml"
    manifest.write_text(text)
    sign(keys["release"], manifest)
    return manifest


def test_a_signed_file_needs_no_typed_sha256(device, usb, keys):
    archive = releases.build_release(usb, "1.1.0")
    signed_manifest_beside(usb, keys)
    signature = sign(keys["release"], archive, usb / "release.sig")

    status, dry = run_cli_json("update", "core", "--from", str(archive), "--signature", str(signature), "--dry-run",
                               config=device.config, env=signed_env(keys))

    assert status == 0, dry
    body = dry["body"]
    assert body["details"]["sha256_source"] == "signature by dunebugger-release-signer"
    assert body["manifest"] == "manifest used"


# --- refusals -----------------------------------------------------------------------


def assert_refused(device: SandboxDevice, expect: str, *args: str, environ: dict[str, str] = OFFLINE) -> None:
    """Exit status 2, one line naming the problem, nothing changed, a line in the history."""
    before, pid = device.fingerprint(), device.app_pid()
    status, refused = run_cli_json("update", *args, config=device.config, env=environ)
    assert status == 2, refused
    body = refused["body"]
    assert (body["success"], body["outcome"]) == (False, "refused")
    assert expect in body["message"] and body["message"].endswith("Nothing was changed."), body["message"]
    assert "\n" not in body["message"]
    assert device.fingerprint() == before and device.app_pid() == pid
    last = history(device)[-1]
    assert (last["outcome"], last["message"]) == ("refused", body["message"])
    assert not list((device.state / "downloads").glob("dunebugger-*")), "no unvouched-for copy stays"


def test_a_file_nothing_vouches_for_is_refused(device, usb):
    archive = releases.build_release(usb, "1.1.0")
    assert_refused(device, f"nothing vouches for {archive}: give the sha256", "core", "--from", str(archive))


def test_a_wrong_sha256_is_refused(device, usb):
    archive = releases.build_release(usb, "1.1.0")
    assert_refused(device, f"sha256 mismatch for dunebugger-1.1.0.tar.gz: expected {'0' * 64} (--sha256), got",
                   "core", "--from", str(archive), "--sha256", "0" * 64)


@pytest.mark.parametrize(("signer", "expect"), [("other", "is not a signature by any configured key"),
                                                ("release", "does not verify")])
def test_a_bad_signature_is_refused(device, usb, keys, signer, expect):
    archive = releases.build_release(usb, "1.1.0")
    signed_manifest_beside(usb, keys)
    signed = usb / "other-bytes.bin"
    signed.write_bytes(archive.read_bytes() if signer == "other" else b"other bytes")
    signature = sign(keys[signer], signed)
    assert_refused(device, expect, "core", "--from", str(archive), "--signature", str(signature),
                   "--sha256", sha256(archive), environ=signed_env(keys))


def test_a_missing_signature_is_refused_when_signatures_are_required(device, usb, keys):
    archive = releases.build_release(usb, "1.1.0")
    signed_manifest_beside(usb, keys)
    assert_refused(device, "has no signature 'dunebugger-1.1.0.tar.gz.sig' (or give --signature FILE)",
                   "core", "--from", str(archive), "--sha256", sha256(archive), environ=signed_env(keys))


@pytest.mark.parametrize("manifest", [None, PLAIN_MANIFEST + "extra_field: 1\n"], ids=["missing", "invalid"])
def test_a_signed_file_needs_its_valid_signed_manifest_beside_it(device, usb, keys, manifest):
    archive = releases.build_release(usb, "1.1.0")
    if manifest is not None:
        signed_manifest_beside(usb, keys, manifest)
    expect = (f"the update-manifest.yaml that comes with {archive} is invalid" if manifest
              else f"no update-manifest.yaml comes with {archive}")
    assert_refused(device, expect, "core", "--from", str(archive), "--signature", str(sign(keys["release"], archive)),
                   environ=signed_env(keys))
    assert "this device requires signed releases" in history(device)[-1]["message"]


async def test_a_bundle_without_a_manifest_is_refused_where_signatures_are_required(device, usb, keys):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    assert_refused(device, f"no update-manifest.yaml comes with bundle {bundle}, and this device requires signed "
                   "releases", "core", "--from", str(bundle), environ=signed_env(keys))


def test_a_file_that_is_not_an_archive_is_refused(device, usb):
    junk = usb / "dunebugger-1.1.0.tar.gz"
    junk.write_bytes(b"this is a text file, not a release\n" * 100)
    assert_refused(device, "dunebugger-1.1.0.tar.gz is not a release archive (a .tar.gz)",
                   "core", "--from", str(junk), "--sha256", sha256(junk))


def test_a_metadata_bomb_in_a_file_is_refused_before_its_header_is_read(device, usb):
    # The first member's GNU long name header declares 1 MiB of name (64 KiB at most).
    long_name = tarfile.TarInfo("././@LongLink")
    long_name.type, long_name.size = tarfile.GNUTYPE_LONGNAME, 1024 * 1024
    good = gzip.decompress(releases.build_release(usb / "good", "1.1.0").read_bytes())
    bomb = usb / "dunebugger-1.1.0.tar.gz"
    bomb.write_bytes(gzip.compress(long_name.tobuf(format=tarfile.GNU_FORMAT) + b"a" * 1024 * 1024 + good))
    assert_refused(device, "refused release archive dunebugger-1.1.0.tar.gz: member 1 has a GNU long name header "
                           "of 1048576 bytes", "core", "--from", str(bomb), "--sha256", sha256(bomb))


def test_a_file_larger_than_the_download_cap_is_refused(device, usb):
    archive = releases.build_release(usb, "1.1.0", extra_members={"blob.bin": os.urandom(2 * 1024 * 1024)})
    assert_refused(device, f"{archive} is larger than the cap of 1048576 bytes (maxDownloadMb)",
                   "core", "--from", str(archive), "--sha256", sha256(archive),
                   environ={**OFFLINE, "UPDATER_MAXDOWNLOADMB": "1"})


def test_a_decompression_bomb_in_a_file_is_refused_before_anything_changes(device, usb):
    bomb = usb / "dunebugger-1.1.0.tar.gz"
    members = io.BytesIO()
    with tarfile.open(fileobj=members, mode="w") as tar:
        for name, data in releases.release_files("1.1.0").items():
            info = tarfile.TarInfo(f"dunebugger-1.1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("dunebugger-1.1.0/zeros.bin")
        info.size = 2 * 1024 ** 3  # header only: the cap refuses it before its data is read
        tar.addfile(info)
    bomb.write_bytes(gzip.compress(members.getvalue()))
    assert_refused(device, "refused release archive dunebugger-1.1.0.tar.gz: member 'dunebugger-1.1.0/zeros.bin' "
                           "takes the unpacked release past the cap of 1073741824 bytes",
                   "core", "--from", str(bomb), "--sha256", sha256(bomb))


# A file is read through whole before anything changes: what staging would find only
# halfway through (after the run started) is refused with the file's other problems.


def cut_short(archive: Path, to: Path) -> Path:
    to.write_bytes(archive.read_bytes()[:archive.stat().st_size // 2])
    return to


def test_a_file_cut_short_is_refused_before_anything_changes(device, usb):
    cut = cut_short(releases.build_release(usb / "whole", "1.1.0"), usb / "dunebugger-1.1.0.tar.gz")
    assert_refused(device, "dunebugger-1.1.0.tar.gz is not a release archive (a .tar.gz): it is cut short or damaged "
                           "(Compressed file ended before the end-of-stream marker was reached)",
                   "core", "--from", str(cut), "--sha256", sha256(cut))


def test_a_file_whose_version_file_names_another_release_is_refused(device, usb):
    other = releases.build_release(usb / "other", "1.0.5")
    named = usb / "dunebugger-1.1.0.tar.gz"
    named.write_bytes(other.read_bytes())
    assert_refused(device, "dunebugger-1.1.0.tar.gz holds release 1.0.5 (its VERSION file), not 1.1.0",
                   "core", "--from", str(named), "--sha256", sha256(named))
    status, dry = run_cli_json("update", "core", "--from", str(named), "--sha256", sha256(named), "--dry-run",
                               config=device.config, env=OFFLINE)
    assert (status, dry["body"]["outcome"]) == (2, "refused"), "a dry run reads the file through too"


def test_bundle_create_refuses_a_release_a_device_would_refuse(device, usb):
    other = releases.build_release(usb / "other", "1.0.5")
    device.github.add_release("marco-svitol/dunebugger", "v1.1.0", assets={"dunebugger-1.1.0.tar.gz": other.read_bytes()})

    made = run_cli("bundle", "create", "--component", "core", "-o", str(usb / "bundle"), config=device.config,
                   env=online(usb))

    assert made.returncode == 1, (made.stdout, made.stderr)
    assert "dunebugger-1.1.0.tar.gz holds release 1.0.5 (its VERSION file), not 1.1.0; no bundle was written" \
        in made.stderr
    assert not (usb / "bundle").exists()


def replace_in_bundle(bundle: Path, name: str, data: bytes) -> None:
    """A bundle file replaced, and bundle.json made to vouch for it."""
    (bundle / "core" / name).write_bytes(data)
    index = json.loads((bundle / "bundle.json").read_text())
    index["releases"][0]["files"][name] = hashlib.sha256(data).hexdigest()
    (bundle / "bundle.json").write_text(json.dumps(index))


async def test_a_bundle_archive_cut_short_is_refused_before_anything_changes(device, usb):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    archive = bundle / "core" / "dunebugger-1.1.0.tar.gz"
    replace_in_bundle(bundle, archive.name, cut_short(archive, usb / "cut.tar.gz").read_bytes())
    assert_refused(device, "dunebugger-1.1.0.tar.gz is not a release archive (a .tar.gz): it is cut short or damaged",
                   "core", "--from", str(bundle))


def test_an_older_version_is_refused(device, usb):
    archive = releases.build_release(usb, "0.9.0")
    assert_refused(device, "0.9.0 is older than the running 1.0.0; update never goes back (use rollback)",
                   "core", "--from", str(archive), "--sha256", sha256(archive))


async def test_a_bundle_for_another_component_is_refused(device, usb):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    assert_refused(device, f"bundle {bundle} holds no release of scheduler (it holds core 1.1.0)",
                   "scheduler", "--from", str(bundle))


@pytest.mark.parametrize(("changes", "expect"), [
    ({"tag": "v9.9.9"}, "bundle.json: releases[0].tag 'v9.9.9' and releases[0].version '1.1.0' name different releases"),
    ({"tag": "v9.9.9", "version": "9.9.9"},
     "the archive 'dunebugger-1.1.0.tar.gz' of core is not that of its version 9.9.9 ('dunebugger-9.9.9.tar.gz')"),
    ({"tag": "v1.1.0-rc1", "version": "1.1.0-rc1"},
     "the archive 'dunebugger-1.1.0.tar.gz' of core is not that of its version 1.1.0-rc1"),
], ids=["tag", "tag-and-version", "prerelease"])
async def test_a_bundle_index_that_contradicts_itself_is_refused_naming_the_fields(device, usb, changes, expect):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    index = json.loads((bundle / "bundle.json").read_text())
    index["releases"][0].update(changes)
    (bundle / "bundle.json").write_text(json.dumps(index))
    assert_refused(device, expect, "core", "--from", str(bundle))


async def test_a_bundle_file_changed_since_the_bundle_was_made_is_refused(device, usb):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    other = releases.build_release(usb / "other", "1.1.0", health="fail")
    (bundle / "core" / "dunebugger-1.1.0.tar.gz").write_bytes(other.read_bytes())
    assert_refused(device, "sha256 mismatch for dunebugger-1.1.0.tar.gz", "core", "--from", str(bundle))


async def test_a_bundle_file_that_leads_outside_the_bundle_is_refused(device, usb):
    device.publish("1.1.0")
    bundle = await make_bundle(device, usb / "bundle")
    inside = bundle / "core" / "dunebugger-1.1.0.tar.gz"
    outside = usb / "elsewhere.tar.gz"
    inside.rename(outside)
    inside.symlink_to(outside)
    assert_refused(device, f"core/dunebugger-1.1.0.tar.gz leads outside the bundle ({outside})",
                   "core", "--from", str(bundle))


async def test_a_fifo_in_a_bundle_is_refused_at_once(device, usb):
    device.publish("1.1.0", manifest=b'version: "1.1.0"\ncomponent_type: "python_app"\n')
    bundle = await make_bundle(device, usb / "bundle")
    manifest = bundle / "core" / "update-manifest.yaml"
    manifest.unlink()
    os.mkfifo(manifest)  # a reader that waited for a writer would hang the update (and the service)
    assert_refused(device, f"cannot read {manifest}: it is a FIFO (named pipe), not a regular file", "core", "--from",
                   str(bundle))


def test_sha256_without_from_and_a_malformed_sha256_are_bad_input(device, usb):
    alone = run_cli("update", "core", "--sha256", "0" * 64, config=device.config, env=OFFLINE)
    assert alone.returncode == 2 and "--sha256 and --signature go with --from PATH" in alone.stderr
    malformed = run_cli("update", "core", "--from", str(usb), "--sha256", "12ab", config=device.config, env=OFFLINE)
    assert malformed.returncode == 2 and "'12ab' is not a sha256" in malformed.stderr


# --- the service: bundles under bundlePath ---------------------------------------------


@pytest.fixture
async def server(device: SandboxDevice, tmp_path: Path) -> AsyncIterator[UpdaterServer]:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    settings = dataclasses.replace(device.settings(OFFLINE), serve_port=free_port(), bundle_path=bundles)
    running = UpdaterServer(settings, scheduler=False)
    await running.start()
    yield running
    await running.stop(grace_seconds=60)


async def perform_update(server: UpdaterServer, body: dict) -> dict:
    async with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        await ws.send(json.dumps({"subject": "updater.perform_update", "source": "frontend", "body": body}))
        while True:
            message = json.loads(await ws.recv())
            if message["subject"] in ("update_result", "error"):
                return message


async def test_the_service_updates_from_a_bundle_under_bundle_path_and_nowhere_else(server, device, usb):
    bundles = server.settings.bundle_path
    device.publish("1.1.0")
    await make_bundle(device, bundles / "core-1.1.0")
    elsewhere = await make_bundle(device, usb / "elsewhere")
    (bundles / "link").symlink_to(elsewhere)
    device.github.reset()
    before = device.fingerprint()

    for name, expect in [("../usb/elsewhere", f"is outside bundlePath {bundles}"),
                         (str(elsewhere), f"bundle {elsewhere} is outside bundlePath {bundles}"),
                         ("link", f"is outside bundlePath {bundles} (it leads to {elsewhere})"),
                         ("missing", "cannot be used: no such file or directory")]:
        refused = await perform_update(server, {"component": "core", "bundle": name})
        assert (refused["subject"], refused["body"]["outcome"]) == ("update_result", "refused"), refused
        assert expect in refused["body"]["message"], refused["body"]["message"]
    assert device.fingerprint() == before

    updated = await perform_update(server, {"component": "core", "bundle": "core-1.1.0"})

    assert (updated["body"]["success"], updated["body"]["outcome"]) == (True, "updated"), updated
    assert device.health()["version"] == "1.1.0"
    outcomes = [entry.outcome for entry in server.service.updater.get_history()]
    assert outcomes == ["refused"] * 4 + ["updated"]
    assert device.github.requests == []


async def test_without_bundle_path_the_service_takes_no_bundle(device, tmp_path):
    settings = dataclasses.replace(device.settings(OFFLINE), serve_port=free_port())
    running = UpdaterServer(settings, scheduler=False)
    await running.start()
    try:
        reply = await perform_update(running, {"component": "core", "bundle": "core-1.1.0"})
    finally:
        await running.stop(grace_seconds=60)
    assert reply["subject"] == "error"
    assert "updates from a bundle are off on this device: set bundlePath" in reply["body"]["message"]
