from pathlib import Path

import pytest

from dunebugger_updater.config import Settings, load_settings
from dunebugger_updater.errors import ConfigError


def load(tmp_path: Path, text: str | None = None, env: dict[str, str] | None = None) -> Settings:
    path = None
    if text is not None:
        path = tmp_path / "dunebugger.conf"
        path.write_text(text)
    return load_settings(path, environ=env or {})


def test_defaults_without_any_config_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, environ={})
    assert settings.update_check_interval_hours == 24
    assert settings.docker_compose_path == Path("/opt/dunebugger/docker-compose.yml")
    assert settings.core_install_path == Path("/opt/dunebugger/core")
    assert settings.backup_path == Path("/opt/dunebugger/backups")
    assert settings.github_api_url == "https://api.github.com"
    assert settings.include_prerelease is False
    assert settings.state_path == Path("/var/lib/dunebugger-updater")
    assert settings.initial_check_delay_minutes == 5
    assert (settings.http_timeout_seconds, settings.download_timeout_seconds) == (15.0, 600.0)
    assert list(settings.components) == ["core", "scheduler", "remote"]
    core = settings.components["core"]
    assert (core.type, core.repo, core.service_name, core.service_manager) == (
        "python_app", "marco-svitol/dunebugger", "dunebugger", "systemd")
    assert core.install_path == Path("/opt/dunebugger/core")
    scheduler = settings.components["scheduler"]
    assert (scheduler.repo, scheduler.service, scheduler.image) == (
        "marco-svitol/dunebugger-scheduler", "scheduler", "ghcr.io/marco-svitol/dunebugger-scheduler")


def test_file_values_and_account_flow_into_component_repos(tmp_path):
    settings = load(tmp_path, """
[Updater]
updateCheckIntervalHours = 6
coreInstallPath = /srv/core
githubAccount = someone
includePrerelease = yes
""")
    assert settings.update_check_interval_hours == 6
    assert settings.include_prerelease is True
    assert settings.components["remote"].repo == "someone/dunebugger-remote"
    assert settings.components["core"].install_path == Path("/srv/core")


def test_environment_overrides_file(tmp_path):
    settings = load(
        tmp_path,
        "[Updater]\ngithubApiUrl = http://file.example\nupdateCheckIntervalHours = 6\n",
        env={"UPDATER_GITHUBAPIURL": "http://127.0.0.1:1234/", "UPDATER_UPDATECHECKINTERVALHOURS": "2"},
    )
    assert settings.github_api_url == "http://127.0.0.1:1234"
    assert settings.update_check_interval_hours == 2


def test_token_from_github_token_env_but_updater_key_wins(tmp_path):
    assert load(tmp_path, env={"GITHUB_TOKEN": "t1"}).github_token == "t1"
    assert load(tmp_path, "[Updater]\ngithubToken = t2\n", env={"GITHUB_TOKEN": "t1"}).github_token == "t2"
    assert load(tmp_path, env={"GITHUB_TOKEN": "t1", "UPDATER_GITHUBTOKEN": "t3"}).github_token == "t3"


def test_other_sections_of_the_shared_file_are_ignored(tmp_path):
    settings = load(tmp_path, "[General]\nanything = 1\n[Updater]\nbackupPath = /b\n")
    assert settings.backup_path == Path("/b")


@pytest.mark.parametrize(
    ("text", "env", "names"),
    [
        ("[Updater]\nupdateCheckIntervalHours = daily\n", {}, ["[Updater] updateCheckIntervalHours", "'daily'", "whole number"]),
        ("[Updater]\nupdateCheckIntervalHours = 0\n", {}, ["updateCheckIntervalHours", "positive"]),
        ("[Updater]\nupdateCheckIntervalHour = 3\n", {}, ["unknown key 'updateCheckIntervalHour'"]),
        ("[Updater]\nstatePath = relative/dir\n", {}, ["statePath", "absolute path"]),
        ("[Updater]\ngithubApiUrl = ftp://x\n", {}, ["githubApiUrl", "http"]),
        ("[Updater]\ngithubApiUrl = http://github.example\n", {}, ["githubApiUrl", "must use https"]),
        ("[Updater]\ngithubApiUrl = http://127.evil.example\n", {}, ["githubApiUrl", "must use https"]),
        ("[Updater]\nincludePrerelease = maybe\n", {}, ["includePrerelease", "true or false"]),
        ("[Updater]\ndownloadTimeoutSeconds = soon\n", {}, ["downloadTimeoutSeconds", "'soon'", "must be a number"]),
        ("[Updater]\ndownloadTimeoutSeconds = 0\n", {}, ["downloadTimeoutSeconds", "above 0 and at most 86400"]),
        ("[Updater]\ndownloadTimeoutSeconds = inf\n", {}, ["downloadTimeoutSeconds", "'inf'", "at most 86400"]),
        ("[Updater]\nhttpTimeoutSeconds = nan\n", {}, ["httpTimeoutSeconds", "'nan'", "above 0"]),
        ("", {"UPDATER_HTTPTIMEOUTSECONDS": "-1"}, ["environment UPDATER_HTTPTIMEOUTSECONDS", "above 0"]),
        ("[Component:core]\ntype = snap\n", {}, ["[Component:core] type", "'snap'", "python_app, container"]),
        ("[Component:core]\nfoo = 1\n", {}, ["[Component:core]", "unknown key 'foo'"]),
        ("[Component:core]\nimage = ghcr.io/a/b\n", {}, ["'image' does not apply to a python_app"]),
        ("[Component:core]\nserviceManager = command\n", {}, ["startCommand", "stopCommand", "statusCommand"]),
        ("[Component:core]\nserviceName = dune; rm -rf /\n", {}, ["serviceName", "not a valid service name"]),
        ("[Component:extra]\nrepo = a/b\n", {}, ["[Component:extra]", "needs a 'type'"]),
        ("[Component:extra]\ntype = container\nrepo = a/b\n", {}, ["needs an 'image'"]),
        ("[Component:Bad Name]\ntype = container\n", {}, ["component name 'Bad Name'"]),
        ("[Component:scheduler]\nimage = GHCR.io/X:tag\n", {}, ["image", "not a valid image reference"]),
        ("", {"UPDATER_SERVEPORT": "99999"}, ["environment UPDATER_SERVEPORT", "TCP port"]),
        ("[Updater\nbroken", {}, ["cannot parse"]),
    ],
)
def test_bad_values_name_file_section_and_key(tmp_path, text, env, names):
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text, env)
    message = str(caught.value)
    for name in names:
        assert name in message
    if not env:
        assert str(tmp_path / "dunebugger.conf") in message


def test_missing_explicit_config_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.conf", environ={})


def test_component_sections_add_and_override(tmp_path):
    settings = load(tmp_path, """
[Component:core]
serviceManager = command
startCommand = /usr/bin/appctl start
stopCommand = /usr/bin/appctl stop
statusCommand = appctl "status now"
healthUrl = http://127.0.0.1:5000/health

[Component:gateway]
type = container
repo = acme/gateway
image = localhost:5000/acme/gateway
""")
    core = settings.components["core"]
    assert core.start_command == ("/usr/bin/appctl", "start")
    assert core.status_command == ("appctl", "status now")
    assert core.health_url == "http://127.0.0.1:5000/health"
    gateway = settings.components["gateway"]
    assert (gateway.type, gateway.service, gateway.image) == ("container", "gateway", "localhost:5000/acme/gateway")
    assert settings.component("gateway") is gateway
    with pytest.raises(ConfigError, match="unknown component 'nope'"):
        settings.component("nope")
