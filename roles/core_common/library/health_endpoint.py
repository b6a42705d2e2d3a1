#!/usr/bin/python
"""Poll a health endpoint until it answers as expected or a wall-clock deadline passes."""

from __future__ import annotations

DOCUMENTATION = r"""
module: health_endpoint
short_description: Wait, bounded by wall-clock time, for a health endpoint to answer
description:
  - Polls I(url) with GET until it answers I(expected_status) or I(timeout) seconds have
    passed since the module started, whatever each request costs. One module execution
    for the whole wait, so the time a wait takes does not grow with the cost of a task
    (over SSH a task round trip can cost more than the pause between attempts).
  - Redirects are not followed (a redirect's own status is the answer).
  - Never changes anything. Fails when the deadline passes, unless I(fail_on_timeout) is false.
options:
  url: {type: str, required: true, description: the health endpoint (http or https)}
  expected_status: {type: int, default: 200, description: the status a healthy service answers with}
  timeout: {type: float, default: 60, description: seconds until the wait gives up}
  delay: {type: float, default: 1, description: seconds between attempts}
  request_timeout: {type: float, default: 5, description: cap on one request (never beyond the deadline)}
  fail_on_timeout: {type: bool, default: true, description: fail when no expected answer came in time}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Wait up to 60 s for the service's health endpoint
  health_endpoint:
    url: http://127.0.0.1:8080/health
    expected_status: 200
    timeout: 60
"""

RETURN = r"""
healthy: {description: whether the expected status came in time, type: bool, returned: always}
status: {description: the last status answered (null when nothing answered), type: int, returned: always}
json: {description: the last answer's body when it is a JSON object, type: dict, returned: always}
attempts: {description: requests made, type: int, returned: always}
elapsed: {description: seconds the wait took, type: float, returned: always}
last_error: {description: why the last attempt was not healthy, type: str, returned: always}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.dunebugger_core import unhealthy_message, wait_healthy


def main():
    module = AnsibleModule(
        argument_spec={
            "url": {"type": "str", "required": True},
            "expected_status": {"type": "int", "default": 200},
            "timeout": {"type": "float", "default": 60},
            "delay": {"type": "float", "default": 1},
            "request_timeout": {"type": "float", "default": 5},
            "fail_on_timeout": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    if not p["url"].startswith(("http://", "https://")):
        module.fail_json(msg=f"health URL {p['url']!r} must be http:// or https://")
    timeout = max(p["timeout"], 0.0)
    result = wait_healthy(p["url"], p["expected_status"], timeout, max(p["delay"], 0.05), max(p["request_timeout"], 0.1))
    if not result["healthy"] and p["fail_on_timeout"]:
        module.fail_json(msg=unhealthy_message(p["url"], p["expected_status"], timeout, result), changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
