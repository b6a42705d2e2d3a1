#!/usr/bin/python
"""What the container of one compose service is doing right now (read only)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: container_state
short_description: Inspect the container of a compose service
description:
  - Runs C(<compose> -f FILE ps -aq SERVICE) and C(docker inspect) (argv, no shell) and
    returns its id, the image id and reference it runs, its state and Docker health
    ("none" when the image has no HEALTHCHECK), and the image's version label.
options:
  compose_command: {type: list, elements: str, required: true, description: argv prefix of compose}
  compose_file: {type: path, required: true}
  service: {type: str, required: true}
"""

import json

from ansible.module_utils.basic import AnsibleModule

VERSION_LABEL = "org.opencontainers.image.version"


def main():
    module = AnsibleModule(
        argument_spec={
            "compose_command": {"type": "list", "elements": "str", "required": True},
            "compose_file": {"type": "path", "required": True},
            "service": {"type": "str", "required": True},
        },
        supports_check_mode=True,
    )
    p = module.params
    argv = [*p["compose_command"], "-f", p["compose_file"], "ps", "-aq", p["service"]]
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg=f"{' '.join(argv)} failed: {err.strip() or out.strip()}")
    ids = out.split()
    if not ids:
        module.exit_json(changed=False, exists=False, running=False, status="missing", health="none",
                         id=None, image_id=None, image_ref=None, version_label=None)
    rc, out, err = module.run_command(["docker", "inspect", ids[0]])
    if rc != 0:
        module.fail_json(msg=f"docker inspect {ids[0]} failed: {err.strip()}")
    info = json.loads(out)[0]
    state = info.get("State") or {}
    config = info.get("Config") or {}
    module.exit_json(
        changed=False,
        exists=True,
        id=info.get("Id"),
        image_id=info.get("Image"),
        image_ref=config.get("Image"),
        status=state.get("Status"),
        running=bool(state.get("Running")),
        restarting=bool(state.get("Restarting")),
        exit_code=state.get("ExitCode"),
        health=(state.get("Health") or {}).get("Status", "none"),
        version_label=(config.get("Labels") or {}).get(VERSION_LABEL),
    )


if __name__ == "__main__":
    main()
