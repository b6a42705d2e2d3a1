"""Signed releases: with signingPublicKey or allowedSigners configured, the artifact's
`<name>.sig` (ssh-keygen -Y sign -n dunebugger-release) must verify, and so must
`update-manifest.yaml.sig` when the release has a manifest, or the update is refused
before anything changes. Keys are made with ssh-keygen for each module."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from dunebugger_updater.bundle.maker import BundleMaker, Wanted
from dunebugger_updater.demo.fake_github import FakeGitHub
from dunebugger_updater.demo.sandbox import releases
from dunebugger_updater.errors import DownloadError
from dunebugger_updater.fleet.rollout import FleetTarget, FleetUpdater
from dunebugger_updater.release.signatures import INLINE_PRINCIPAL, NAMESPACE, SignaturePolicy
from support.attack_kit import ASSET, assert_refused, attempt, publish_raw
from support.device import SandboxDevice

# ssh-keygen (openssh-client) is installed by ci/install-system-packages.sh: a missing one fails here.
pytestmark = pytest.mark.integration


def make_key(directory: Path, name: str) -> Path:
    key = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
    return key


def sign(key: Path, data: bytes, work: Path, namespace: str = NAMESPACE) -> bytes:
    target = work / f"signed-{namespace}.bin"
    target.write_bytes(data)
    Path(f"{target}.sig").unlink(missing_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(key), "-n", namespace, str(target)],
                   check=True, capture_output=True)
    return Path(f"{target}.sig").read_bytes()


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("keys")
    return {"release": make_key(directory, "release"), "other": make_key(directory, "other")}


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return releases.build_release(tmp_path_factory.mktemp("dist"), "1.1.0").read_bytes()


def key_env(keys: dict[str, Path]) -> dict[str, str]:
    return {"UPDATER_SIGNINGPUBLICKEY": Path(f"{keys['release']}.pub").read_text().strip()}


MANIFEST = "update-manifest.yaml"
PLAIN_MANIFEST = b'version: "1.1.0"\ncomponent_type: "python_app"\n'


def publish(device, keys, archive: bytes, work: Path, **fields) -> None:
    """A release of `archive` with a manifest signed by the release key (a device that
    requires signatures requires a signed manifest), and the assets the test gives."""
    assets = {MANIFEST + ".sig": sign(keys["release"], PLAIN_MANIFEST, work), **fields.pop("assets", {})}
    publish_raw(device, "v1.1.0", archive=archive, manifest=PLAIN_MANIFEST, assets=assets, **fields)


async def test_good_signature_verifies(device, keys, archive, tmp_path):
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)})
    result, _ = await attempt(device, environ=key_env(keys))
    assert result.success and result.outcome == "dry_run", result.message


async def test_allowed_signers_file_verifies(device, keys, archive, tmp_path):
    signers = tmp_path / "allowed_signers"
    public = Path(f"{keys['release']}.pub").read_text()
    signers.write_text(f'maintainer@example namespaces="{NAMESPACE}" {public}')
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)})
    result, _ = await attempt(device, environ={"UPDATER_ALLOWEDSIGNERS": str(signers)})
    assert result.success, result.message


async def test_missing_signature_is_refused(device, keys, archive, tmp_path):
    publish(device, keys, archive, tmp_path)
    await assert_refused(device, "has no signature 'dunebugger-1.1.0.tar.gz.sig'", environ=key_env(keys))


async def test_signature_by_another_key_is_refused(device, keys, archive, tmp_path):
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": sign(keys["other"], archive, tmp_path)})
    await assert_refused(device, "is not a signature by any configured key", environ=key_env(keys))
    assert not (device.state / "downloads" / ASSET).exists()


async def test_signature_for_another_namespace_is_refused(device, keys, archive, tmp_path):
    signature = sign(keys["release"], archive, tmp_path, namespace="file")
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": signature})
    await assert_refused(device, "signature", environ=key_env(keys))


async def test_signature_of_other_bytes_is_refused(device, keys, archive, tmp_path):
    """A genuine signature of an older artifact, replayed beside a new one."""
    older = releases.build_release(tmp_path / "old", "1.0.5").read_bytes()
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": sign(keys["release"], older, tmp_path)})
    await assert_refused(device, "does not verify", environ=key_env(keys))


@pytest.mark.parametrize("signature", [b"", b"garbage", b"-----BEGIN SSH SIGNATURE-----\n$(id)\n", b"x" * 20_000])
async def test_garbage_signature_is_refused(device, keys, archive, signature, tmp_path):
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": signature})
    await assert_refused(device, "dunebugger-1.1.0.tar.gz.sig", environ=key_env(keys))


async def test_signature_from_a_disallowed_host_is_refused(device, keys, archive, tmp_path):
    publish(device, keys, archive, tmp_path, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)},
                asset_urls={ASSET + ".sig": "http://evil.example/x.sig"})
    await assert_refused(device, "download from 'evil.example' is not allowed", environ=key_env(keys))


async def test_without_a_key_signatures_are_not_required(device, archive):
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": b"garbage"})
    result, _ = await attempt(device)
    assert result.success, result.message


def test_a_public_key_that_is_not_one_key_line_is_a_config_error(tmp_path):
    from dunebugger_updater.config import load_settings
    from dunebugger_updater.errors import ConfigError

    for bad in ("ssh-ed25519 AAAA\nssh-rsa BBBB", "cert-authority ssh-ed25519 AAAA", "ssh-ed25519 $(id)"):
        with pytest.raises(ConfigError, match="(?i)signingpublickey"):
            load_settings(None, environ={"UPDATER_SIGNINGPUBLICKEY": bad})


# --- the manifest chooses the migration script and the checks: the signature covers it --

# Names an executable that the signed release carries but that its maintainer never
# meant to run as the migration.
CHOOSING_MANIFEST = (b'version: "1.1.0"\ncomponent_type: "python_app"\nupdate_steps:\n'
                     b'  - action: "run_migrations"\n    script: "scripts/chosen.sh"\n')


@pytest.fixture(scope="module")
def two_script_archive(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    chosen = (b'#!/bin/sh\ntouch "$DUNEBUGGER_RELEASE_DIR/chosen-script-ran"\n', 0o755)
    return releases.build_release(tmp_path_factory.mktemp("two-scripts"), "1.1.0",
                                  extra_members={"scripts/chosen.sh": chosen}).read_bytes()


def publish_signed(device, keys, archive: bytes, work: Path, manifest_signature: bytes | None = None) -> None:
    """A release whose archive is signed by the release key, with CHOOSING_MANIFEST and
    the manifest signature the test gives (none when None)."""
    assets = {ASSET + ".sig": sign(keys["release"], archive, work)}
    if manifest_signature is not None:
        assets[MANIFEST + ".sig"] = manifest_signature
    publish_raw(device, "v1.1.0", archive=archive, manifest=CHOOSING_MANIFEST, assets=assets)


async def test_unsigned_manifest_is_refused_when_signatures_are_required(device, keys, two_script_archive, tmp_path):
    publish_signed(device, keys, two_script_archive, tmp_path)
    await assert_refused(device, "has no signature 'update-manifest.yaml.sig'", environ=key_env(keys), dry_run=False)


async def test_manifest_signed_by_another_key_is_refused_before_any_download(device, keys, two_script_archive, tmp_path):
    publish_signed(device, keys, two_script_archive, tmp_path, sign(keys["other"], CHOOSING_MANIFEST, tmp_path))
    (device.state / "downloads" / ASSET).unlink(missing_ok=True)  # left by an earlier dry run
    await assert_refused(device, "update-manifest.yaml.sig is not a signature by any configured key",
                         environ=key_env(keys), dry_run=False)
    assert not (device.state / "downloads" / ASSET).exists()


async def test_manifest_signature_of_another_manifest_is_refused(device, keys, two_script_archive, tmp_path):
    """A genuine signature of the release's harmless manifest, beside an altered one."""
    harmless = b'version: "1.1.0"\ncomponent_type: "python_app"\n'
    publish_signed(device, keys, two_script_archive, tmp_path, sign(keys["release"], harmless, tmp_path))
    await assert_refused(device, ("signature update-manifest.yaml.sig does not verify",), environ=key_env(keys))


async def test_signed_manifest_is_used(keys, two_script_archive, tmp_path):
    with FakeGitHub() as github:
        device = SandboxDevice(tmp_path / "device", github)
        device.start()
        try:
            publish_signed(device, keys, two_script_archive, tmp_path,
                           sign(keys["release"], CHOOSING_MANIFEST, tmp_path))
            result, _ = await attempt(device, environ=key_env(keys), dry_run=False)
            assert (result.success, result.outcome, result.manifest) == (True, "updated", "manifest used"), result.message
            assert (device.home / "releases" / "core" / "1.1.0" / "chosen-script-ran").is_file()
        finally:
            device.close()


# --- a signed release is used with its signed manifest or not at all -------------------
# Removing the manifest, making it 404 or spoiling it used to fall back to the built-in
# procedure, dropping the checks the signed manifest asked for.

STRICT_MANIFEST = (b'version: "1.1.0"\ncomponent_type: "python_app"\npre_update_checks:\n'
                   b'  - type: "disk_space"\n    minimum_mb: 999999999\n')
NO_SIGNED_MANIFEST = "this device requires signed releases (signingPublicKey/allowedSigners), whose signed manifest"


def publish_signed_archive(device, keys, archive: bytes, work: Path, manifest: bytes | None,
                           manifest_signature: bytes | None) -> None:
    assets = {ASSET + ".sig": sign(keys["release"], archive, work)}
    if manifest_signature is not None:
        assets[MANIFEST + ".sig"] = manifest_signature
    publish_raw(device, "v1.1.0", archive=archive, manifest=manifest, assets=assets)


async def test_a_signed_release_without_its_manifest_is_refused(device, keys, archive, tmp_path):
    """The manifest answers 404; the signature of the strict manifest is still attached."""
    publish_signed_archive(device, keys, archive, tmp_path, None, sign(keys["release"], STRICT_MANIFEST, tmp_path))
    result = await assert_refused(device, ("no update-manifest.yaml comes with release v1.1.0", NO_SIGNED_MANIFEST),
                                  environ=key_env(keys), dry_run=False)
    assert result.manifest == ""


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
async def test_a_signed_release_with_an_invalid_manifest_is_refused(device, keys, archive, tmp_path, signed):
    """One extra top-level key makes the strict manifest invalid: no built-in procedure instead."""
    spoiled = STRICT_MANIFEST + b"extra_field: 1\n"
    publish_signed_archive(device, keys, archive, tmp_path, spoiled,
                           sign(keys["release"], spoiled, tmp_path) if signed else None)
    await assert_refused(device, ("the update-manifest.yaml that comes with release v1.1.0 is invalid "
                                  "(manifest: Additional properties are not allowed", NO_SIGNED_MANIFEST),
                         environ=key_env(keys), dry_run=False)


async def test_without_a_key_a_release_without_a_manifest_uses_the_built_in_procedure(device, archive):
    publish_raw(device, "v1.1.0", archive=archive)
    result, _ = await attempt(device)
    assert (result.success, result.manifest) == (True, "no manifest: built-in procedure"), result.message


async def test_a_fleet_update_of_a_signed_release_without_its_manifest_is_refused(device, keys, archive, tmp_path):
    publish_signed_archive(device, keys, archive, tmp_path, None, None)
    inventory = tmp_path / "inventory.yml"  # one device nobody answers for: the release is refused before
    inventory.write_text("all:\n  hosts:\n    nowhere:\n      ansible_host: 127.0.0.1\n      ansible_port: 9\n")
    result = await FleetUpdater(device.settings(key_env(keys))).update("core", FleetTarget(inventory), dry_run=True)
    assert not result.success and NO_SIGNED_MANIFEST in result.message, result.message


async def test_a_bundle_of_a_signed_release_without_its_manifest_is_not_made(device, keys, archive, tmp_path):
    publish_signed_archive(device, keys, archive, tmp_path, None, None)
    maker = BundleMaker(device.settings({**key_env(keys), "UPDATER_STATEPATH": str(tmp_path / "state")}))
    with pytest.raises(DownloadError, match="no update-manifest.yaml comes with release v1.1.0"):
        await maker.create([Wanted("core")], tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_the_example_workflow_signs_the_archive_and_the_manifest(keys, tmp_path):
    """The signing step of .github/workflows/release.yml, run by bash as Actions would,
    makes signatures that a device with the public key accepts."""
    workflow = yaml.safe_load((Path(__file__).parents[2] / ".github" / "workflows" / "release.yml").read_text())
    (step,) = [step for step in workflow["jobs"]["release"]["steps"] if step.get("name", "").startswith("Sign ")]
    (tmp_path / "dist").mkdir()
    archive, manifest = tmp_path / "dist" / "dunebugger-1.2.0.tar.gz", tmp_path / "update-manifest.yaml"
    archive.write_bytes(b"release archive bytes")
    manifest.write_bytes(CHOOSING_MANIFEST)
    environ = {"PATH": os.environ["PATH"], "VERSION": "1.2.0", "RUNNER_TEMP": str(tmp_path),
               "SIGNING_KEY": keys["release"].read_text()}
    subprocess.run(["bash", "-e", "-c", step["run"]], cwd=tmp_path, env=environ, check=True, capture_output=True)

    policy = SignaturePolicy(public_key=Path(f"{keys['release']}.pub").read_text().strip())
    assert policy.verify(archive, Path(f"{archive}.sig").read_bytes(), name=archive.name) == INLINE_PRINCIPAL
    signature = (tmp_path / "dist" / "update-manifest.yaml.sig").read_bytes()
    assert policy.verify_bytes(manifest.read_bytes(), signature, name=MANIFEST) == INLINE_PRINCIPAL
    assert not (tmp_path / "release_key").exists(), "the private key must not stay behind"
