"""A token that no HTTP header can carry (a line break that would inject a header,
typographic quotes from a copy and paste, a space, a control character, a page of
text) used to reach httpx, whose error quoted the whole `Authorization` header into
the check's output, last-check.json and history.jsonl. Now it is refused where it
enters, with a message that describes it and never quotes it, and again where it
would leave (Settings built in Python skip the configuration); and no message of an
unexpected error carries an exception's text into results, history or notifications."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.errors import ConfigError
from support.attack_kit import attempt, publish_raw

pytestmark = pytest.mark.integration

SECRET = "SECRET4f1d"  # in every bad token: it must appear nowhere
BAD_TOKENS = {
    "header injection": f"ghp_{SECRET}\r\nX-Injected: yes",
    "typographic quotes": f"\u201cghp_{SECRET}\u201d",
    "a space inside": f"ghp_{SECRET} extra",
    "a tab": f"ghp_{SECRET}\tx",
    "DEL": f"ghp_{SECRET}\x7f",
    "a zero-width space": f"ghp_{SECRET}\u200b",
    "a page of text": f"ghp_{SECRET}" + "x" * 2000,
}
DESCRIBED = {
    "header injection": "has a line break at position 15",
    "typographic quotes": "has a character that is not ASCII at position 1",
    "a space inside": "has a space at position 15",
    "a tab": "has a space at position 15",
    "DEL": "has a control character at position 15",
    "a zero-width space": "has an invisible character at position 15",
    "a page of text": "is 2014 characters long, more than a token's 1024",
}
SOURCES = {  # where a token comes from -> (environment variable, or None: the config file's key), what the message names
    "GITHUB_TOKEN": ("GITHUB_TOKEN", "environment GITHUB_TOKEN"),
    "UPDATER_GITHUBTOKEN": ("UPDATER_GITHUBTOKEN", "environment UPDATER_GITHUBTOKEN"),
    "githubToken": (None, "[Updater] githubToken"),
    "UPDATER_SERVETOKEN": ("UPDATER_SERVETOKEN", "environment UPDATER_SERVETOKEN"),
    "serveToken": (None, "[Updater] serveToken"),
}


def run_cli(config: Path, environ: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("UPDATER_") and k != "GITHUB_TOKEN"}
    return subprocess.run([sys.executable, "-m", "dunebugger_updater.cli", "--config", str(config), *argv],
                          capture_output=True, text=True, timeout=120, env={**base, **environ})


def files_holding(root: Path, text: str) -> list[Path]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and text.encode() in path.read_bytes():
            found.append(path)
    return found


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", BAD_TOKENS)
def test_a_token_no_header_can_carry_is_refused_unquoted(device, tmp_path, source, kind):
    variable, named = SOURCES[source]
    config = tmp_path / "dunebugger.conf"
    text = device.config.read_text()
    environ = {}
    if variable is None:
        line = f"{source} = {BAD_TOKENS[kind]}\n".replace("\r\n", "\n  ")  # an INI value continued on the next line
        text = text.replace("[Updater]\n", f"[Updater]\n{line}", 1)
    else:
        environ[variable] = BAD_TOKENS[kind]
    config.write_text(text)
    publish_raw(device, "v1.1.0")

    for argv in (["check", "--force"], ["update", "core", "--json"]):
        done = run_cli(config, environ, *argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stdout == "", done.stderr
        assert f"{named}: {DESCRIBED[kind]}" in done.stderr, done.stderr
        assert SECRET not in done.stderr
    assert device.github.requests == [], "nothing may be asked with a token refused"
    assert files_holding(device.state, SECRET) == []


@pytest.mark.parametrize(("key", "section"), [("githubApiUrl", "Updater"), ("healthUrl", "Component:core")])
def test_a_url_carrying_a_password_is_refused_unquoted(tmp_path, key, section):
    """A URL is named in messages, check results and history: no password may ride in it."""
    config = tmp_path / "dunebugger.conf"
    config.write_text(f"[{section}]\n{key} = https://me:{SECRET}@api.github.com\n")
    with pytest.raises(ConfigError) as refused:
        load_settings(config, environ={})
    assert str(refused.value) == (f"{config}: [{section}] {key}: must not carry a user name or password: they would "
                                  "show wherever the URL is named")


def test_a_token_at_the_edges_of_the_rules_is_taken(tmp_path):
    visible = "".join(chr(code) for code in range(0x21, 0x7F))
    for token in (visible, "x" * 1024, f"  ghp_{SECRET}  "):
        settings = load_settings(None, environ={"GITHUB_TOKEN": token, "UPDATER_SERVETOKEN": token})
        assert settings.github_token == settings.serve_token == token.strip()


def test_settings_never_show_their_secrets(tmp_path):
    settings = load_settings(None, environ={"GITHUB_TOKEN": f"ghp_{SECRET}", "UPDATER_SERVETOKEN": f"s_{SECRET}",
                                            "UPDATER_NOTIFYURLS": f"json://user:{SECRET}@127.0.0.1/hook"})
    assert SECRET not in repr(settings) and SECRET not in str(settings)
    with pytest.raises(ConfigError) as refused:
        load_settings(None, environ={"GITHUB_TOKEN": BAD_TOKENS["header injection"]})
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize("kind", ["header injection", "typographic quotes"])
async def test_settings_made_in_python_with_such_a_token_never_send_or_record_it(device, kind):
    """Settings built in Python skip the configuration's check: the header is checked too."""
    publish_raw(device, "v1.1.0")
    settings = dataclasses.replace(device.settings(), github_token=BAD_TOKENS[kind])
    updater = ComponentUpdater(settings)

    status = (await updater.check_updates(force=True))["core"]
    result = await updater.update_component("core", dry_run=True)

    assert status.error and "the API token (githubToken or GITHUB_TOKEN) has" in status.error, status.error
    assert (result.success, result.outcome) == (False, "refused")
    assert "the API token (githubToken or GITHUB_TOKEN) has" in result.message
    assert SECRET not in status.error + result.message + repr(updater.get_history())
    assert device.github.requests == []
    assert files_holding(device.state, SECRET) == []


async def test_an_unexpected_error_that_quotes_the_token_stays_out_of_results_and_history(device):
    """A library error that quotes the request's headers (as httpx's header errors did)."""
    publish_raw(device, "v1.1.0")

    def quoting_failure(request: httpx.Request) -> httpx.Response:
        raise RuntimeError(f"cannot send {request.headers.get('authorization')}")

    token = f"ghp_{SECRET}"
    result, updater = await attempt(device, environ={"GITHUB_TOKEN": token},
                                    transport=httpx.MockTransport(quoting_failure))

    assert (result.success, result.outcome) == (False, "failed")
    assert result.message == ("core update failed: internal error (RuntimeError); the updater's log has the details")
    assert SECRET not in repr(updater.get_history())
    assert files_holding(device.state, SECRET) == []
