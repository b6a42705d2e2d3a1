import os
import subprocess
import sys
import textwrap
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
        ("[Updater]\nupdateCheckIntervalHours = 0\n", {}, ["updateCheckIntervalHours", "from 1 to 8760"]),
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


# --- bounds: a stray digit must not mean "never", nor overflow a timer --------------------


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[Updater]\nupdateCheckIntervalHours = 99999999999999999999999",
         "[Updater] updateCheckIntervalHours: '99999999999999999999999' must be a whole number of hours from 1 to 8760"),
        ("[Updater]\ninitialCheckDelayMinutes = 99999999999999999999",
         "[Updater] initialCheckDelayMinutes: '99999999999999999999' must be a whole number of minutes from 0 to 1440"),
        ("[Updater]\nplaybookTimeoutMinutes = 1000000000",
         "[Updater] playbookTimeoutMinutes: '1000000000' must be a number of minutes above 0 and at most 1440"),
        ("[Updater]\nmaxDownloadMb = 1000000000", "[Updater] maxDownloadMb: '1000000000' must be a whole number of MB from 1 to 65536"),
        ("[Updater]\nmaxExtractMb = -5", "[Updater] maxExtractMb: '-5' must be a whole number of MB from 1 to 65536"),
        ("[Updater]\nbackupsToKeep = 1000", "[Updater] backupsToKeep: '1000' must be a whole number from 1 to 100"),
        ("[Updater]\nhttpTimeoutSeconds = 1e400", "[Updater] httpTimeoutSeconds: '1e400' must be a number of seconds above 0"),
        ("[Updater]\nservePort = 0", "[Updater] servePort: '0' must be a TCP port from 1 to 65535"),
        ("[Component:core]\nhealthTimeoutSeconds = 1000000",
         "[Component:core] healthTimeoutSeconds: '1000000' must be a whole number of seconds from 1 to 3600"),
        ("[Updater]\nbackupsToKeep = 1_0", "[Updater] backupsToKeep: '1_0' must be a whole number from 1 to 100"),
        ("[Component:core]\nsettleSeconds = 0.5",
         "[Component:core] settleSeconds: '0.5' must be a whole number of seconds from 1 to 600"),
    ],
)
def test_numeric_settings_are_bounded_and_the_message_names_key_and_range(tmp_path, line, message):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, line + "\n")
    assert message in str(refused.value)


def test_the_bounds_themselves_are_accepted(tmp_path):
    settings = load(tmp_path, "[Updater]\nupdateCheckIntervalHours = 8760\ninitialCheckDelayMinutes = 0\n"
                              "maxDownloadMb = 65536\nbackupsToKeep = 100\nservePort = 65535\n")
    assert (settings.update_check_interval_hours, settings.initial_check_delay_minutes, settings.max_download_mb,
            settings.backups_to_keep, settings.serve_port) == (8760, 0, 65536, 100, 65535)


def test_a_huge_value_is_quoted_short_in_one_line(tmp_path):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f"[Updater]\nupdateCheckIntervalHours = {'9' * 5000}\n")
    message = str(refused.value)
    assert "'99999999" in message and "...' must be a whole number of hours from 1 to 8760" in message
    assert len(message) < 300 and "\n" not in message


# --- section names that differ only in case ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "meant"),
    [
        ("[updater]\nstatePath = /x\n", "[updater] would be ignored: did you mean [Updater]?"),
        ("[UPDATER]\nstatePath = /x\n", "[UPDATER] would be ignored: did you mean [Updater]?"),
        ("[Updater]\nstatePath = /x\n[component:core]\nserviceName = x\n",
         "[component:core] would be ignored: did you mean [Component:core]?"),
        ("[COMPONENT:Scheduler]\nservice = x\n", "[COMPONENT:Scheduler] would be ignored: did you mean [Component:scheduler]?"),
        ("[CORE]\nserviceName = x\n", "[CORE] would be ignored: did you mean [Component:core]?"),
        ("[Component:gateway]\ntype = container\nrepo = a/b\nimage = x/y\n[Gateway]\nimage = x/z\n",
         "[Gateway] would be ignored: did you mean [Component:gateway]?"),
    ],
)
def test_a_section_meant_for_the_updater_in_another_case_is_refused(tmp_path, text, meant):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, text)
    assert f"{tmp_path / 'dunebugger.conf'}: section {meant} (section names are case-sensitive)" == str(refused.value)


def test_sections_of_other_programs_stay_ignored_even_when_named_like_a_component(tmp_path):
    settings = load(tmp_path, "[Remote]\nhost = 10.0.0.2\n[General]\nname = x\n[Updater]\nbackupPath = /b\n")
    assert settings.backup_path == Path("/b")


# --- the config file itself -------------------------------------------------------------------

LOAD_IN_A_CHILD = textwrap.dedent("""
    import resource, sys
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))  # /dev/zero read whole would take it all
    from dunebugger_updater.config import load_settings
    from dunebugger_updater.errors import ConfigError
    try:
        load_settings(sys.argv[1], environ={})
    except ConfigError as exc:
        print(exc)
""")


def load_in_a_child(path: Path) -> str:
    """What loading `path` says, in a child process bounded in time and memory."""
    done = subprocess.run([sys.executable, "-c", LOAD_IN_A_CHILD, str(path)], capture_output=True, text=True,
                          timeout=20)
    assert done.returncode == 0 and done.stderr == "", done.stderr[-2000:]
    return done.stdout.strip()


def test_a_fifo_as_the_config_file_is_refused_at_once(tmp_path):
    fifo = tmp_path / "dunebugger.conf"
    os.mkfifo(fifo)  # opening it for reading used to wait for a writer for ever
    assert load_in_a_child(fifo) == (f"config file {fifo}: it is a FIFO (named pipe), not a regular file: "
                                     "name the INI file with --config")


def test_a_device_as_the_config_file_is_refused_unread():
    assert load_in_a_child(Path("/dev/zero")) == ("config file /dev/zero: it is a character device, not a regular "
                                                  "file: name the INI file with --config")


def test_a_config_file_over_a_mib_is_refused(tmp_path):
    big = tmp_path / "dunebugger.conf"
    big.write_text("[Updater]\n" + "# a comment\n" * 100_000)
    assert load_in_a_child(big) == f"config file {big}: it is larger than 1 MiB: name the INI file with --config"
