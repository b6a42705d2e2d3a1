"""Detached SSH signatures of release artifacts.

A maintainer signs the release archive and the release's manifest with

    ssh-keygen -Y sign -f release_key -n dunebugger-release dunebugger-1.2.0.tar.gz
    ssh-keygen -Y sign -f release_key -n dunebugger-release update-manifest.yaml

and attaches `dunebugger-1.2.0.tar.gz.sig` and `update-manifest.yaml.sig` to the release.
When the device is configured with `signingPublicKey` (one OpenSSH public key line)
and/or `allowedSigners` (an `ssh-keygen` allowed_signers file), every update needs the
archive's signature, and a valid manifest with its signature (the manifest chooses the
migration script and the checks; `manifest.release_manifest` refuses a release without
one): a missing one, one made by another key, for another namespace or over other bytes
refuses the update before anything on the device changes.
Without either key, signatures are not looked at.

`ssh-keygen` runs as an argv list (never a shell) in the minimal child environment, with
the signed artifact on stdin and a private temporary directory for the signature and
the signers list.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Settings
from ..environment import child_environment
from ..errors import SignatureError, os_reason
from ..files import read_capped

log = logging.getLogger(__name__)

NAMESPACE = "dunebugger-release"
SIGNATURE_SUFFIX = ".sig"
MAX_SIGNATURE_BYTES = 16 * 1024
MAX_SIGNERS_BYTES = 1024 * 1024  # an allowed_signers file: one line per key
INLINE_PRINCIPAL = "dunebugger-release-signer"  # principal of the key given as signingPublicKey
SSH_KEYGEN_TIMEOUT = 60


@dataclass(frozen=True)
class SignaturePolicy:
    public_key: str | None = None
    allowed_signers: Path | None = None
    ssh_keygen: str = "ssh-keygen"

    @classmethod
    def from_settings(cls, settings: Settings) -> SignaturePolicy:
        return cls(public_key=settings.signing_public_key, allowed_signers=settings.allowed_signers)

    @property
    def required(self) -> bool:
        return bool(self.public_key or self.allowed_signers)

    def verify(self, artifact: Path, signature: bytes, *, name: str) -> str:
        """The principal whose key signed `artifact`, or SignatureError."""
        if len(signature) > MAX_SIGNATURE_BYTES:
            raise SignatureError(f"signature {name}{SIGNATURE_SUFFIX} is larger than {MAX_SIGNATURE_BYTES} bytes")
        program = shutil.which(self.ssh_keygen)
        if program is None:
            raise SignatureError(f"cannot verify {name}{SIGNATURE_SUFFIX}: ssh-keygen is not installed")
        with tempfile.TemporaryDirectory(prefix="dunebugger-signature-") as tmp:
            signers = Path(tmp) / "allowed_signers"
            signers.write_text(self._signers_text(), encoding="utf-8")
            signature_file = Path(tmp) / "artifact.sig"
            signature_file.write_bytes(signature)
            principals = self._principals(program, signers, signature_file)
            if not principals:
                raise SignatureError(f"{name}{SIGNATURE_SUFFIX} is not a signature by any configured key")
            failures = []
            for principal in principals:
                verified, detail = self._verify_as(program, signers, signature_file, principal, artifact)
                if verified:
                    log.info("%s: signature by %s verified", name, principal)
                    return principal
                failures.append(detail)
        reason = "; ".join(f for f in failures if f) or "ssh-keygen refused it"
        raise SignatureError(f"signature {name}{SIGNATURE_SUFFIX} does not verify: {reason}")

    def verify_bytes(self, data: bytes, signature: bytes, *, name: str) -> str:
        """verify() for content held in memory (the manifest)."""
        with tempfile.TemporaryDirectory(prefix="dunebugger-signed-") as tmp:
            signed = Path(tmp) / "signed"
            signed.write_bytes(data)
            return self.verify(signed, signature, name=name)

    def _signers_text(self) -> str:
        lines = []
        if self.public_key:
            lines.append(f'{INLINE_PRINCIPAL} namespaces="{NAMESPACE}" {self.public_key}')
        if self.allowed_signers:
            try:
                lines.append(read_capped(self.allowed_signers, MAX_SIGNERS_BYTES).decode("utf-8"))
            except OSError as exc:
                reason = os_reason(exc)
                raise SignatureError(f"allowedSigners file {self.allowed_signers} cannot be read: {reason}") from None
            except UnicodeDecodeError:
                raise SignatureError(f"allowedSigners file {self.allowed_signers} is not UTF-8 text") from None
        return "\n".join(lines) + "\n"

    @staticmethod
    def _principals(program: str, signers: Path, signature: Path) -> list[str]:
        argv = [program, "-Y", "find-principals", "-f", str(signers), "-s", str(signature)]
        done = _run(argv, stdin=None)
        if done.returncode != 0:
            return []
        return [line.strip() for line in done.stdout.decode("utf-8", "replace").splitlines() if line.strip()]

    @staticmethod
    def _verify_as(program: str, signers: Path, signature: Path, principal: str, artifact: Path) -> tuple[bool, str]:
        argv = [program, "-Y", "verify", "-f", str(signers), "-I", principal, "-n", NAMESPACE, "-s", str(signature)]
        with artifact.open("rb") as data:
            done = _run(argv, stdin=data)
        detail = " ".join(done.stderr.decode("utf-8", "replace").split())[:300]
        return done.returncode == 0, detail


def _run(argv: list[str], stdin: Any) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv,
            stdin=stdin if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            timeout=SSH_KEYGEN_TIMEOUT,
            check=False,
            env=child_environment(),
        )
    except subprocess.TimeoutExpired:
        raise SignatureError(f"ssh-keygen did not finish within {SSH_KEYGEN_TIMEOUT} s") from None
    except OSError as exc:
        raise SignatureError(f"cannot run ssh-keygen: {exc.strerror or exc}") from None
