
from dunebugger_updater.device.installed import image_tag, image_tag_in_compose, read_version_file


def test_version_file_json_and_plain(tmp_path):
    path = tmp_path / "VERSION"
    path.write_text('{"version": "1.2.0", "prerelease": false, "build_type": "release", "commit": "abc"}')
    assert read_version_file(path).version == "1.2.0"
    path.write_text("1.3.0-beta\nsecond line ignored\n")
    assert read_version_file(path).version == "1.3.0-beta"


def test_version_file_missing_or_broken_is_not_installed(tmp_path):
    missing = read_version_file(tmp_path / "VERSION")
    assert missing.version is None and "not installed" in missing.detail
    (tmp_path / "VERSION").write_text('{"version": 12}')
    assert read_version_file(tmp_path / "VERSION").version is None
    (tmp_path / "VERSION").write_text("")
    assert "holds no version" in read_version_file(tmp_path / "VERSION").detail
    (tmp_path / "VERSION").write_bytes(b"1" * 100_000)
    assert "too large" in read_version_file(tmp_path / "VERSION").detail


def test_image_tag():
    assert image_tag("ghcr.io/marco-svitol/dunebugger-scheduler:1.2.0") == "1.2.0"
    assert image_tag("localhost:5000/x/y:2.0") == "2.0"
    assert image_tag("localhost:5000/x/y") is None
    assert image_tag("ghcr.io/x/y@sha256:abcd") is None


def test_compose_tags(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text("""
# comment
services:
  scheduler:
    image: ghcr.io/marco-svitol/dunebugger-scheduler:1.0.0
  remote:
    build: .
""")
    assert image_tag_in_compose(compose, "scheduler").version == "1.0.0"
    assert "has no image" in image_tag_in_compose(compose, "remote").detail
    assert "no service 'other'" in image_tag_in_compose(compose, "other").detail
    assert "is missing" in image_tag_in_compose(tmp_path / "none.yml", "x").detail
    compose.write_text("services: [unclosed")
    assert "cannot read" in image_tag_in_compose(compose, "scheduler").detail
