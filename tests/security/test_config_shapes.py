"""Names, images and commands from the configuration end up in argv lists and paths:
shell metacharacters, option injection and newlines are refused by strict patterns."""

from __future__ import annotations

import pytest

from dunebugger_updater.config import load_settings
from dunebugger_updater.errors import ConfigError

HOSTILE_NAMES = ["dunebugger; rm -rf /", "$(id)", "`id`", "--help", "-oProxyCommand=id", "dune\nbugger",
                 "dune bugger", "../../etc/passwd", "{{ lookup('pipe','id') }}", "a|b", "a&b", "a>b"]


def config_with(tmp_path, section: str, key: str, value: str):
    path = tmp_path / "dunebugger.conf"
    # configparser continuation lines carry a newline into the value
    path.write_text(f"[{section}]\n{key} = {value.replace(chr(10), chr(10) + '    ')}\n")
    return path


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_service_name_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="serviceName"):
        load_settings(config_with(tmp_path, "Component:core", "serviceName", value), environ={})


@pytest.mark.parametrize("value", HOSTILE_NAMES)
def test_hostile_compose_service_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="service"):
        load_settings(config_with(tmp_path, "Component:scheduler", "service", value), environ={})


@pytest.mark.parametrize("value", ["ghcr.io/x/y;id", "--privileged", "ghcr.io/x/y:latest", "ghcr.io/x/y\nz",
                                   "ghcr.io/X/Y", "-v/:/host", "ghcr.io/x/{{y}}"])
def test_hostile_image_reference_is_refused(tmp_path, value):
    with pytest.raises(ConfigError, match="image"):
        load_settings(config_with(tmp_path, "Component:scheduler", "image", value), environ={})


@pytest.mark.parametrize(("key", "value"), [("repo", "a/b/../c"), ("repo", "--help/x"),
                                            ("assetPattern", "../{version}.tar.gz"), ("assetPattern", "x-{version};id")])
def test_hostile_repo_or_asset_pattern_is_refused(tmp_path, key, value):
    with pytest.raises(ConfigError, match=key):
        load_settings(config_with(tmp_path, "Component:core", key, value), environ={})
