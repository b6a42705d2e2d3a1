import pytest
from packaging.version import Version

from dunebugger_updater.versions import NotAVersion, is_newer, parse_version


@pytest.mark.parametrize(("tag", "expected"), [
    ("v1.2.0", "1.2.0"), ("1.2.0", "1.2.0"), ("V2.0", "2.0"),
    ("v1.3.0-beta", "1.3.0b0"), ("1.3.0-rc.1", "1.3.0rc1"), ("1.0.0.post1", "1.0.0.post1"),
])
def test_tags_parse(tag, expected):
    assert parse_version(tag) == Version(expected)


@pytest.mark.parametrize("tag", [
    "nightly", "", "v", "latest-build", "1.2.0+local", "1!2.0", "1.2.0; rm -rf /",
    "{{ lookup('pipe','id') }}", "v1.2.0\n", "../1.2.0", "1" * 80,
])
def test_non_versions_are_refused(tag):
    with pytest.raises(NotAVersion):
        parse_version(tag)


def test_prerelease_orders_before_its_release():
    assert parse_version("v1.3.0-beta") < parse_version("1.3.0")
    assert parse_version("v1.3.0-beta").is_prerelease
    assert parse_version("v1.3.0-beta") > parse_version("1.2.9")


def test_is_newer():
    assert is_newer(Version("1.1"), Version("1.0"))
    assert not is_newer(Version("1.0"), Version("1.0"))
    assert not is_newer(Version("0.9"), Version("1.0"))
    assert is_newer(Version("0.1"), None)
