"""The service's config keys: autoUpdate, updateWindow, notifyUrls (and serve*)."""

from pathlib import Path

import pytest

from dunebugger_updater.config import Settings, load_settings
from dunebugger_updater.errors import ConfigError


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "dunebugger.conf"
    path.write_text(text)
    return load_settings(path, environ=env or {})


def test_defaults(tmp_path):
    settings = load(tmp_path, "[Updater]\n")
    assert (settings.auto_update, settings.update_window, settings.notify_urls) == ("off", "", ())
    assert (settings.serve_host, settings.serve_port, settings.serve_token) == ("127.0.0.1", 8765, None)


def test_values_from_file_and_environment(tmp_path):
    settings = load(tmp_path, """
[Updater]
autoUpdate = minor
updateWindow = 22:00-03:00
notifyUrls = mailto://127.0.0.1:2525?from=a@b.example&to=c@d.example,
    json://127.0.0.1:9000/hook   slack://T000/B000/XXXX
""", env={"UPDATER_AUTOUPDATE": "patch"})
    assert settings.auto_update == "patch"
    assert settings.update_window == "22:00-03:00"
    assert settings.notify_urls == (
        "mailto://127.0.0.1:2525?from=a@b.example&to=c@d.example", "json://127.0.0.1:9000/hook", "slack://T000/B000/XXXX")


@pytest.mark.parametrize(("line", "message"), [
    ("autoUpdate = sometimes", "[Updater] autoUpdate: 'sometimes' must be one of: off, patch, minor, all"),
    ("updateWindow = 2am-5am", "[Updater] updateWindow: '2am-5am' must look like 02:00-05:00"),
    ("updateWindow = 03:00-03:00", "starts and ends at the same time"),
])
def test_bad_values_name_the_key(tmp_path, line, message):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, f"[Updater]\n{line}\n")
    assert message in str(error.value)


def test_a_bad_notify_url_is_named_without_quoting_its_secrets(tmp_path):
    with pytest.raises(ConfigError) as error:
        load(tmp_path, "[Updater]\nnotifyUrls = json://ok/hook not-a-url-with-password-hunter2\n")
    text = str(error.value)
    assert "[Updater] notifyUrls: entry 2 is not an apprise URL" in text
    assert "hunter2" not in text
