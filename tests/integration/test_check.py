"""Update checks against the loopback GitHub-like server, through the library and the CLI."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from dunebugger_updater import ComponentUpdater, load_settings
from dunebugger_updater.demo.fake_github import FakeGitHub
from support.cli import message_of, run_cli, run_cli_json
from support.hostile_github import HostileGitHub

pytestmark = pytest.mark.usefixtures("clean_env")


@pytest.fixture
def github() -> Iterator[HostileGitHub]:
    """The loopback GitHub, able to refuse a repository with its rate limit."""
    with HostileGitHub() as server:
        yield server


def device(tmp_path: Path, github: FakeGitHub, extra: str = "") -> Path:
    """A config for a device whose core runs 1.0.0 and whose containers run 1.0.0."""
    core = tmp_path / "core"
    core.mkdir()
    (core / "VERSION").write_text('{"version": "1.0.0", "commit": "abc"}')
    compose = tmp_path / "docker-compose.yml"
    compose.write_text(
        "services:\n"
        "  scheduler:\n    image: ghcr.io/marco-svitol/dunebugger-scheduler:1.0.0\n"
        "  remote:\n    image: ghcr.io/marco-svitol/dunebugger-remote:v1.0.0\n"
    )
    config = tmp_path / "dunebugger.conf"
    config.write_text(
        "[Updater]\n"
        f"githubApiUrl = {github.url}\n"
        f"coreInstallPath = {core}\n"
        f"dockerComposePath = {compose}\n"
        f"statePath = {tmp_path / 'state'}\n"
        "httpTimeoutSeconds = 5\n" + extra
    )
    return config


def publish_standard_releases(github: FakeGitHub) -> None:
    github.add_release("marco-svitol/dunebugger", "v1.0.0")
    github.add_release("marco-svitol/dunebugger", "v1.1.0", body="### New Features\n- Feature 1")
    github.add_release("marco-svitol/dunebugger", "v1.2.0-beta", prerelease=True)
    github.add_release("marco-svitol/dunebugger", "v9.9.9", draft=True)
    github.add_release("marco-svitol/dunebugger-scheduler", "1.0.0")
    github.add_release("marco-svitol/dunebugger-remote", "v1.1.0", body="### Bug Fixes\n- Fix 1")


async def test_check_compares_installed_with_latest(tmp_path, github):
    publish_standard_releases(github)
    updater = ComponentUpdater(load_settings(device(tmp_path, github), environ={}))
    results = await updater.check_updates(force=True)

    core, scheduler, remote = results["core"], results["scheduler"], results["remote"]
    assert (core.current_version, core.latest_version, core.update_available) == ("1.0.0", "1.1.0", True)
    assert core.release_notes == "### New Features\n- Feature 1"
    assert (scheduler.latest_version, scheduler.update_available) == ("1.0.0", False)
    assert (remote.current_version, remote.latest_version, remote.update_available) == ("v1.0.0", "1.1.0", True)
    assert all(status.error is None and status.last_checked for status in results.values())


async def test_prereleases_only_when_asked(tmp_path, github):
    publish_standard_releases(github)
    config = device(tmp_path, github, "includePrerelease = true\n")
    results = await ComponentUpdater(load_settings(config, environ={})).check_updates(force=True)
    assert results["core"].latest_version == "1.2.0-beta"  # as the release names it (PEP 440 would say 1.2.0b0)
    assert results["core"].latest_tag == "v1.2.0-beta"
    table = run_cli("check", config=config)
    assert "1.2.0-beta" in table.stdout and "b0" not in table.stdout, table.stdout


async def test_lookups_overlap_in_time(tmp_path):
    with FakeGitHub(latency=0.3) as slow:
        publish_standard_releases(slow)
        updater = ComponentUpdater(load_settings(device(tmp_path, slow), environ={}))
        await updater.check_updates(force=True)
    first_finish = min(request.finished for request in slow.requests)
    last_start = max(request.started for request in slow.requests)
    assert len(slow.requests) == 3
    assert last_start < first_finish, "the three lookups ran one after another"


def statuses(github: FakeGitHub) -> Counter[int]:
    return Counter(request.status for request in github.requests)


async def test_forced_recheck_is_answered_by_304_and_unforced_asks_nothing(tmp_path, github):
    publish_standard_releases(github)
    config = device(tmp_path, github)
    updater = ComponentUpdater(load_settings(config, environ={}))
    first = await updater.check_updates(force=True)
    assert statuses(github) == {200: 3}

    # A new process: only the cache on disk can make these 304s.
    again = await ComponentUpdater(load_settings(config, environ={})).check_updates(force=True)
    assert statuses(github) == {200: 3, 304: 3}
    assert {n: s.latest_version for n, s in again.items()} == {n: s.latest_version for n, s in first.items()}

    await updater.check_updates(force=False)
    assert len(github.requests) == 6, "a recent answer must be reused without asking GitHub"


async def test_per_component_errors_do_not_spoil_the_others(tmp_path, github):
    github.add_release("marco-svitol/dunebugger", "nightly-2026")
    github.rate_limit("marco-svitol/dunebugger-scheduler", reset_epoch=1_900_000_000)
    # remote has no repository at all: 404
    results = await ComponentUpdater(load_settings(device(tmp_path, github), environ={})).check_updates(force=True)

    assert "'nightly-2026' is not a version" in results["core"].error
    assert "rate limit" in results["scheduler"].error and "2030-03-17T17:46:40" in results["scheduler"].error
    assert "404" in results["remote"].error
    for status in results.values():
        assert status.latest_version is None and status.update_available is False


async def test_token_is_sent_when_configured(tmp_path):
    with HostileGitHub(require_token="s3cret") as github:
        publish_standard_releases(github)
        config = device(tmp_path, github)
        without = await ComponentUpdater(load_settings(config, environ={})).check_updates(force=True)
        assert "401" in without["core"].error
        with_token = await ComponentUpdater(load_settings(config, environ={"GITHUB_TOKEN": "s3cret"})).check_updates(force=True)
        assert with_token["core"].error is None
        assert github.requests[-1].headers["authorization"] == "Bearer s3cret"


async def test_slow_server_is_a_timeout_error(tmp_path):
    with FakeGitHub(latency=1.5) as github:
        publish_standard_releases(github)
        config = device(tmp_path, github, "")
        settings = load_settings(config, environ={"UPDATER_HTTPTIMEOUTSECONDS": "0.3"})
        results = await ComponentUpdater(settings).check_updates(force=True)
        host = github.url.removeprefix("http://")
    assert f"no complete answer from {host} within 0.3 s (httpTimeoutSeconds)" in results["core"].error


async def test_unreachable_server_is_a_network_error(tmp_path, github):
    settings = load_settings(device(tmp_path, github), environ={"UPDATER_GITHUBAPIURL": "http://127.0.0.1:9"})
    results = await ComponentUpdater(settings).check_updates(force=True)
    assert "cannot reach 127.0.0.1" in results["core"].error


async def test_not_installed_component_is_reported_not_crashed(tmp_path, github):
    publish_standard_releases(github)
    config = device(tmp_path, github)
    (tmp_path / "core" / "VERSION").unlink()
    (tmp_path / "docker-compose.yml").unlink()
    results = await ComponentUpdater(load_settings(config, environ={})).check_updates(force=True)
    assert results["core"].current_version is None
    assert results["core"].latest_version == "1.1.0"
    assert results["core"].update_available is False
    assert "not installed" in results["core"].detail


async def test_get_all_versions_reads_the_device_and_last_check(tmp_path, github):
    publish_standard_releases(github)
    updater = ComponentUpdater(load_settings(device(tmp_path, github), environ={}))
    before = updater.get_all_versions()
    assert before["core"].current_version == "1.0.0" and before["core"].latest_version is None

    await updater.check_updates(force=True)
    after = updater.get_all_versions()
    assert after["core"].latest_version == "1.1.0" and after["core"].update_available


# --- the CLI -------------------------------------------------------------------------


def test_cli_check_json_is_exactly_the_message(tmp_path, github):
    publish_standard_releases(github)
    result = run_cli("check", "--force", "--json", config=device(tmp_path, github))
    assert result.returncode == 0, result.stderr
    message = message_of(result)
    assert message["subject"] == "update_check_result" and message["source"] == "controller"
    core = message["body"]["components"]["core"]
    assert {k: core[k] for k in ("current", "latest", "update_available")} == {
        "current": "1.0.0", "latest": "1.1.0", "update_available": True}
    assert set(core) >= {"current", "latest", "update_available", "release_notes", "last_checked"}


def test_cli_check_exit_1_when_a_component_failed_and_json_still_printed(tmp_path, github):
    publish_standard_releases(github)
    github.rate_limit("marco-svitol/dunebugger-remote", reset_epoch=1_900_000_000)
    status, message = run_cli_json("check", config=device(tmp_path, github))
    assert status == 1
    remote = message["body"]["components"]["remote"]
    assert remote["latest"] is None and remote["update_available"] is False and "rate limit" in remote["error"]


def test_cli_environment_overrides_the_file(tmp_path, github):
    publish_standard_releases(github)
    config = device(tmp_path, github)
    status, message = run_cli_json("check", config=config, env={"UPDATER_GITHUBAPIURL": "http://127.0.0.1:9"})
    assert status == 1
    assert "cannot reach" in message["body"]["components"]["core"]["error"]


def test_cli_bad_config_exits_2_naming_the_key(tmp_path, github):
    config = device(tmp_path, github, "updateCheckIntervalHours = soon\n")
    result = run_cli("check", "--json", config=config)
    assert result.returncode == 2
    assert result.stdout == ""
    assert "[Updater] updateCheckIntervalHours" in result.stderr and str(config) in result.stderr


def test_cli_bad_usage_exits_2():
    assert run_cli("frobnicate").returncode == 2


def test_cli_table_and_versions(tmp_path, github):
    publish_standard_releases(github)
    config = device(tmp_path, github)
    table = run_cli("check", config=config)
    assert table.returncode == 0
    assert "core" in table.stdout and "update available" in table.stdout
    status, versions = run_cli_json("versions", config=config)
    assert status == 0
    assert versions["body"]["components"]["core"]["latest"] == "1.1.0"


CHANGED_QUESTIONS = {  # setting -> (environment, the newest core release it leads to)
    "includePrerelease": ({"UPDATER_INCLUDEPRERELEASE": "true"}, "1.2.0-beta"),
    "githubAccount": ({"UPDATER_GITHUBACCOUNT": "someone-else"}, "2.0.0"),
    "githubApiUrl": (None, "3.0.0"),  # another API server, filled in below
    "repo": ({}, "2.5.0"),  # [Component:core] repo, written into the file below
}


@pytest.mark.parametrize("change", sorted(CHANGED_QUESTIONS))
async def test_a_stored_answer_is_reused_only_for_the_same_question(tmp_path, github, change):
    """A setting that changes what is asked (channel, repository, account, API) makes the
    next unforced check ask again, although the stored answer is minutes old."""
    publish_standard_releases(github)
    github.add_release("someone-else/dunebugger", "v2.0.0")
    github.add_release("marco-svitol/dunebugger-fork", "v2.5.0")
    config = device(tmp_path, github)
    first = await ComponentUpdater(load_settings(config, environ={})).check_updates()
    assert first["core"].latest_version == "1.1.0"

    environ, expected = CHANGED_QUESTIONS[change]
    with FakeGitHub() as other:
        other.add_release("marco-svitol/dunebugger", "v3.0.0")
        if change == "githubApiUrl":
            environ = {"UPDATER_GITHUBAPIURL": other.url}
        if change == "repo":
            with config.open("a") as handle:
                handle.write("[Component:core]\nrepo = marco-svitol/dunebugger-fork\n")
        second = await ComponentUpdater(load_settings(config, environ=environ)).check_updates()

    assert second["core"].latest_version == expected
