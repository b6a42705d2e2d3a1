"""Signed releases: with signingPublicKey or allowedSigners configured, the artifact's
`<name>.sig` (ssh-keygen -Y sign -n dunebugger-release) must verify, or the update is
refused before anything changes. Keys are made with ssh-keygen for each module."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from attack_kit import ASSET, assert_refused, attempt, publish_raw
from dunebugger_updater.sandbox import releases
from dunebugger_updater.signatures import NAMESPACE

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)")]


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


async def test_good_signature_verifies(device, keys, archive, tmp_path):
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)})
    result, _ = await attempt(device, environ=key_env(keys))
    assert result.success and result.outcome == "dry_run", result.message


async def test_allowed_signers_file_verifies(device, keys, archive, tmp_path):
    signers = tmp_path / "allowed_signers"
    public = Path(f"{keys['release']}.pub").read_text()
    signers.write_text(f'maintainer@example namespaces="{NAMESPACE}" {public}')
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)})
    result, _ = await attempt(device, environ={"UPDATER_ALLOWEDSIGNERS": str(signers)})
    assert result.success, result.message


async def test_missing_signature_is_refused(device, keys, archive):
    publish_raw(device, "v1.1.0", archive=archive)
    await assert_refused(device, "has no signature 'dunebugger-1.1.0.tar.gz.sig'", environ=key_env(keys))


async def test_signature_by_another_key_is_refused(device, keys, archive, tmp_path):
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": sign(keys["other"], archive, tmp_path)})
    await assert_refused(device, "is not a signature by any configured key", environ=key_env(keys))
    assert not (device.state / "downloads" / ASSET).exists()


async def test_signature_for_another_namespace_is_refused(device, keys, archive, tmp_path):
    signature = sign(keys["release"], archive, tmp_path, namespace="file")
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": signature})
    await assert_refused(device, "signature", environ=key_env(keys))


async def test_signature_of_other_bytes_is_refused(device, keys, archive, tmp_path):
    """A genuine signature of an older artifact, replayed beside a new one."""
    older = releases.build_release(tmp_path / "old", "1.0.5").read_bytes()
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": sign(keys["release"], older, tmp_path)})
    await assert_refused(device, "does not verify", environ=key_env(keys))


@pytest.mark.parametrize("signature", [b"", b"garbage", b"-----BEGIN SSH SIGNATURE-----\n$(id)\n", b"x" * 20_000])
async def test_garbage_signature_is_refused(device, keys, archive, signature):
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": signature})
    await assert_refused(device, "dunebugger-1.1.0.tar.gz.sig", environ=key_env(keys))


async def test_signature_from_a_disallowed_host_is_refused(device, keys, archive, tmp_path):
    publish_raw(device, "v1.1.0", archive=archive, assets={ASSET + ".sig": sign(keys["release"], archive, tmp_path)},
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
