"""Every error the updater raises on purpose.

    UpdaterError
     ├── ConfigError            a config file, section, key or value is wrong (exit status 2)
     │    └── StateDirError     statePath cannot be used safely
     ├── ReleaseLookupError     no usable release: from GitHub, or in the file or bundle named
     │    ├── RateLimited       the API refused for rate limit (knows when it resets)
     │    └── InvalidTag        a release tag that is not a version
     ├── ManifestError          an update-manifest.yaml that cannot be used
     │    ├── ManifestInvalid   malformed or schema-breaking: the built-in procedure runs
     │    └── ManifestRefused   hostile, or contradicting its release or the device: refused
     ├── DownloadError          an artifact that is not allowed, too big, or corrupt
     │    └── SignatureError    a required signature is missing or does not verify
     ├── BadRequest             a request names something impossible (exit status 2)
     ├── PreflightError         the device is not ready, or the update is not allowed
     ├── PlaybookError          a playbook could not be run at all (not: a run that failed)
     └── Busy                   another update holds the device lock

Each message names what is wrong (file, section, key, component, tag, URL), because
the message is all a person at a frontend will see. `reason` is that message without
the name of the component, for sentences that name it already ("core update refused:
<reason>").
"""

from __future__ import annotations

import os
from datetime import datetime


class UpdaterError(Exception):
    """Root of the updater's own errors."""

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


class ConfigError(UpdaterError):
    """A configuration problem; the CLI exits with status 2."""


class StateDirError(ConfigError):
    """statePath cannot be used safely; the message names the path and the fix."""


class ReleaseLookupError(UpdaterError):
    """A release of one component could not be looked up (at GitHub, or in a file or
    bundle on this device)."""

    def __init__(self, component: str, message: str) -> None:
        super().__init__(f"{component}: {message}", reason=message)
        self.component = component


class RateLimited(ReleaseLookupError):
    def __init__(self, component: str, resets_at: datetime | None) -> None:
        when = f"; it resets at {resets_at.isoformat()}" if resets_at else ""
        super().__init__(component, f"GitHub API rate limit exceeded{when}")
        self.resets_at = resets_at


class InvalidTag(ReleaseLookupError):
    def __init__(self, component: str, tag: str) -> None:
        super().__init__(component, f"release tag {tag!r} is not a version")
        self.tag = tag


class ManifestError(UpdaterError):
    """An update manifest that cannot be used."""


class ManifestInvalid(ManifestError):
    """Malformed or schema-breaking: fall back to the built-in procedure."""


class ManifestRefused(ManifestError):
    """Well-formed but unsafe or contradicting its release: stop the update."""


class DownloadError(UpdaterError):
    """An artifact download that was refused or failed verification."""


class SignatureError(DownloadError):
    """A required signature is missing or does not verify (the update is refused)."""


class BadRequest(UpdaterError):
    """A request that cannot be served as asked (bad version text, wrong component type)."""


class PreflightError(UpdaterError):
    """The update must not start; nothing on the device was changed."""


class PlaybookError(UpdaterError):
    """A playbook could not be run at all (not: a run that failed)."""


class Busy(UpdaterError):
    """Another update is running on this device."""


def os_reason(exc: OSError) -> str:
    """ "permission denied", "no such file or directory": the reason alone, for a sentence
    that already names the path (an OSError's own text repeats it, errno and all)."""
    return os.strerror(exc.errno).lower() if exc.errno else str(exc)
