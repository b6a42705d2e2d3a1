#!/usr/bin/python
"""Remove files and directory trees of any depth."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_remove
short_description: Remove files, links and directory trees, whatever their depth
description:
  - Each path is removed if it exists - a file, a link (never what it points to), or a
    directory tree of any depth (C(ansible.builtin.file) with C(state=absent) recurses,
    and fails on a tree deeper than Python's recursion limit). Links inside a tree are
    removed, never followed.
options:
  paths: {type: list, elements: path, required: true, description: what to remove}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Remove what a failed run staged
  core_remove:
    paths:
      - /opt/dunebugger/releases/core/1.2.0.partial
      - /opt/dunebugger/releases/core/1.2.0
"""

RETURN = r"""
removed: {description: the paths that existed and were removed, type: list, elements: str, returned: always}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_files import remove_tree


def main():
    module = AnsibleModule(argument_spec={"paths": {"type": "list", "elements": "path", "required": True}})
    removed = []
    for path in module.params["paths"]:
        if not os.path.lexists(path):
            continue
        try:
            remove_tree(path)
        except OSError as exc:
            module.fail_json(msg=f"cannot remove {path}: {exc}", removed=removed)
        removed.append(path)
    module.exit_json(changed=bool(removed), removed=removed)


if __name__ == "__main__":
    main()
