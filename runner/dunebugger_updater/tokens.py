"""The shape of a bearer token (`githubToken`/`GITHUB_TOKEN`, `serveToken`).

A token travels in an HTTP header (`Authorization: Bearer <token>`), which carries
visible ASCII unchanged and nothing else: a line break would inject a header, and
HTTP libraries refuse other characters with an error that quotes the whole header,
token included, into messages, check results and history. So a token is checked where
it enters (the configuration) and again where it leaves (the header), and a problem is
described by kind and position, never by quoting the token.
"""

from __future__ import annotations

import unicodedata

MAX_TOKEN_LENGTH = 1024  # GitHub's tokens are well under 300 characters


def token_problem(token: str) -> str | None:
    """Why `token` cannot be a bearer token (never quoting it), or None."""
    if len(token) > MAX_TOKEN_LENGTH:
        return f"is {len(token)} characters long, more than a token's {MAX_TOKEN_LENGTH}"
    position = next((index for index, char in enumerate(token) if not "!" <= char <= "~"), None)
    if position is None:
        return None
    return (
        f"has {_kind(token[position])} at position {position + 1}; a token is visible ASCII only: "
        "copy it again, without quotes, spaces or line breaks"
    )


def _kind(char: str) -> str:
    if char in "\r\n":
        return "a line break"
    if char.isspace():
        return "a space"
    category = unicodedata.category(char)
    if category == "Cc":
        return "a control character"
    if category == "Cf":
        return "an invisible character"
    return "a character that is not ASCII"
