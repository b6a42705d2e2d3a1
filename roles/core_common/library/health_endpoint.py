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
"""

import json
import time
import urllib.error
import urllib.request

from ansible.module_utils.basic import AnsibleModule

MAX_BODY_BYTES = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(_NoRedirect)


def probe(url, timeout):
    """(status or None, JSON object of the body or None, error text)."""
    try:
        with OPENER.open(url, timeout=timeout) as answer:
            return answer.status, _json_object(answer.read(MAX_BODY_BYTES)), ""
    except urllib.error.HTTPError as exc:
        return exc.code, None, ""
    except (OSError, ValueError) as exc:  # refused, reset, timed out, bad URL
        return None, None, str(getattr(exc, "reason", exc))


def _json_object(data):
    try:
        document = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


def wait(url, expected, timeout, delay, request_timeout, clock=time.monotonic, sleep=time.sleep):
    started = clock()
    deadline = started + timeout
    attempts = 0
    while True:
        attempts += 1
        remaining = max(deadline - clock(), 0.1)
        status, body, error = probe(url, min(request_timeout, remaining))
        if status == expected:
            return {"healthy": True, "status": status, "json": body, "attempts": attempts,
                    "elapsed": round(clock() - started, 2), "last_error": ""}
        last = f"answered {status}" if status is not None else (error or "no answer")
        if clock() + delay >= deadline:
            return {"healthy": False, "status": status, "json": body, "attempts": attempts,
                    "elapsed": round(clock() - started, 2), "last_error": last}
        sleep(delay)


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
    result = wait(p["url"], p["expected_status"], max(p["timeout"], 0.0), max(p["delay"], 0.05),
                  max(p["request_timeout"], 0.1))
    if not result["healthy"] and p["fail_on_timeout"]:
        module.fail_json(
            msg=(f"the health endpoint {p['url']} did not answer {p['expected_status']} within "
                 f"{p['timeout']:g}s ({result['attempts']} attempts; last: {result['last_error']})"),
            changed=False, **result)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
