"""What `fleet` says when ansible-inventory fails before it parses the file."""

from __future__ import annotations

from pathlib import Path

from dunebugger_updater.fleet.inventory import parser_message

TRACEBACK = """\
Traceback (most recent call last):
  File "/usr/lib/python3/dist-packages/ansible/config/manager.py", line 181, in _ensure_type
    makedirs_safe(value, 0o700)
ansible.errors.AnsibleError: Unable to create local directories '/nonexistent/.ansible/tmp': [Errno 13] Permission denied
"""


def test_a_traceback_becomes_its_last_line_with_a_hint():
    message = parser_message(TRACEBACK, Path("fleet.yml"))

    assert "Traceback" not in message and "File " not in message
    assert message.startswith("ansible-inventory failed: Unable to create local directories '/nonexistent/.ansible/tmp'")
    assert message.endswith("(set HOME, or ANSIBLE_HOME, to a directory this user can write)")
