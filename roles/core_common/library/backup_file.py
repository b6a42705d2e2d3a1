#!/usr/bin/python
"""Write a backup file that only its owner can read."""

from __future__ import annotations

DOCUMENTATION = r"""
module: backup_file
short_description: Write a copy of I(src), or I(content), as a backup only its owner can read
description:
  - A backup holds what the original holds (a compose file may carry passwords in its
    environment), so it is written 0600 from the moment it exists (a temporary file
    renamed into place, never created wider and then chmod-ed), in a directory made
    private first - created 0700, an existing one of this user tightened to 0700, one of
    another user refused with a message saying what to do.
  - The backup's modification time is the time it was taken (the age checks read it).
options:
  dest: {type: path, required: true, description: the backup file to write}
  src: {type: path, description: the file to copy (exactly one of src and content)}
  content: {type: str, description: the text to write (exactly one of src and content)}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Back up the compose file
  backup_file:
    src: /opt/dunebugger/docker-compose.yml
    dest: /opt/dunebugger/backups/compose-scheduler-20260101T120000-1.1.0.yml

- name: Record the image that ran before
  backup_file:
    content: "sha256:0f4c...e1\n"
    dest: /opt/dunebugger/backups/compose-scheduler-20260101T120000-1.1.0.image
"""

RETURN = r"""
dest: {description: the backup written, type: str, returned: success}
"""

import os

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_files import private_directory, write_private


def main():
    module = AnsibleModule(
        argument_spec={
            "dest": {"type": "path", "required": True},
            "src": {"type": "path"},
            "content": {"type": "str"},
        },
        required_one_of=[("src", "content")],
        mutually_exclusive=[("src", "content")],
    )
    dest, src, content = module.params["dest"], module.params["src"], module.params["content"]
    try:
        if src is not None:
            with open(src, "rb") as handle:
                data = handle.read()
        else:
            data = content.encode("utf-8")
        private_directory(os.path.dirname(dest))
        write_private(dest, data)
    except OSError as exc:
        module.fail_json(msg=f"cannot write the backup {dest}: {exc}")
    module.exit_json(changed=True, dest=dest)


if __name__ == "__main__":
    main()
