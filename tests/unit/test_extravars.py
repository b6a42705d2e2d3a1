from pathlib import Path

import yaml

from dunebugger_updater.device import extravars


def test_every_non_empty_string_is_unsafe_and_types_survive():
    text = extravars.render({
        "version": "{{ lookup('pipe', 'id') }}",
        "empty": "",
        "path": Path("/opt/x"),
        "argv": ("a", "{% raw %}"),
        "number": 3,
        "flag": True,
        "nested": {"k": "v"},
    })
    assert "!unsafe \"{{ lookup('pipe', 'id') }}\"" in text
    assert "empty: \"\"" in text  # Ansible 2.19 would read `!unsafe ""` as None
    assert "argv:\n- !unsafe \"a\"\n- !unsafe \"{% raw %}\"" in text
    assert "number: 3" in text and "flag: true" in text and "path: !unsafe \"/opt/x\"" in text

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_constructor("!unsafe", lambda loader, node: ("UNSAFE", loader.construct_scalar(node)))
    loaded = yaml.load(text, Loader=Loader)
    assert loaded["version"] == ("UNSAFE", "{{ lookup('pipe', 'id') }}")
    assert loaded["nested"] == {"k": ("UNSAFE", "v")}


def test_write_is_private(tmp_path):
    target = tmp_path / "env" / "extravars"
    extravars.write(target, {"a": "b"})
    assert target.stat().st_mode & 0o777 == 0o600
