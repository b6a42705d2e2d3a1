"""Extra-vars for the playbooks, written so that Ansible never templates them.

Release tags, manifest fields and URLs come from the network. Every string we hand to
Ansible is tagged `!unsafe` in the extra-vars file: a `{{ lookup('pipe', ...) }}` in a
release note or a manifest arrives as the literal text, never as a template.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


class _UnsafeDumper(yaml.SafeDumper):
    pass


def _unsafe_string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if not value:
        # ansible-core 2.19 reads `!unsafe ""` as None; an empty string holds no template.
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')
    return dumper.represent_scalar("!unsafe", value, style='"')


def _mapping(dumper: yaml.SafeDumper, value: Mapping[str, Any]) -> yaml.MappingNode:
    # Keys are our own variable names: plain strings. Values are data: unsafe.
    pairs = [
        (dumper.represent_scalar("tag:yaml.org,2002:str", key), dumper.represent_data(item))
        for key, item in sorted(value.items())
    ]
    return yaml.MappingNode("tag:yaml.org,2002:map", pairs)


_UnsafeDumper.add_representer(str, _unsafe_string)
_UnsafeDumper.add_representer(dict, _mapping)


def render(values: Mapping[str, Any]) -> str:
    """YAML text of `values` with every string tagged `!unsafe`."""
    return yaml.dump(_plain(values), Dumper=_UnsafeDumper, sort_keys=True, allow_unicode=True)


def write(path: Path, values: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(values), encoding="utf-8")
    path.chmod(0o600)


def _plain(value: Any) -> Any:
    """Paths to strings and tuples to lists, recursively, so the dumper sees only YAML types."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value
