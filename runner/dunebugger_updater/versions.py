"""Release tags and version numbers.

Tags look like `v1.2.0`, `1.2.0` or `v1.3.0-beta`; `packaging` reads them (PEP 440
normalises `1.3.0-beta` to the prerelease `1.3.0b0`). Only plain release numbers with
an optional pre/post/dev part are accepted: a local part (`+build`) or an epoch could
hide what is really being installed.
"""

from __future__ import annotations

import re

from packaging.version import InvalidVersion, Version

from .errors import BadRequest

# Allowed characters before packaging sees the string; keeps paths and argv safe.
TAG_SHAPE = re.compile(r"^[vV]?[0-9][0-9A-Za-z.-]{0,62}$")


class NotAVersion(ValueError):
    pass


def parse_version(text: str) -> Version:
    """`v1.2.0` -> Version('1.2.0'); raises NotAVersion naming the text."""
    candidate = text
    if not TAG_SHAPE.fullmatch(candidate):
        raise NotAVersion(f"{text!r} is not a version")
    try:
        version = Version(candidate)
    except InvalidVersion:
        raise NotAVersion(f"{text!r} is not a version") from None
    if version.local is not None or version.epoch != 0:
        raise NotAVersion(f"{text!r} is not a plain release version")
    return version


def parse_or_none(text: str | None) -> Version | None:
    """The version in `text`, or None when there is none or it is not a version."""
    if text is None:
        return None
    try:
        return parse_version(text)
    except NotAVersion:
        return None


def requested_version(text: str, option: str) -> str:
    """A version asked for on the command line or in a request, without its "v"."""
    try:
        parse_version(text)
    except NotAVersion as exc:
        raise BadRequest(f"{option}: {exc}") from None
    return without_v(text)


def without_v(tag: str) -> str:
    """`v1.2.0` -> `1.2.0`: the release's own version text (what its VERSION file says)."""
    return tag[1:] if tag[:1] in "vV" else tag


def is_newer(candidate: Version, current: Version | None) -> bool:
    """True when `candidate` should replace `current` (nothing installed counts as older)."""
    return current is None or candidate > current
