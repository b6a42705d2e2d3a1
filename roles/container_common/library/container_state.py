#!/usr/bin/python
"""What the container of one compose service is doing, and the compose project it runs in."""

from __future__ import annotations

DOCUMENTATION = r"""
module: container_state
short_description: Inspect the container of a compose service and the project it belongs to
description:
  - Finds the service's containers by their compose labels (C(docker ps -a) and one
    C(docker inspect), argv, no shell), keeping those started from I(compose_file). The
    compose project is read from the running container's labels (project name, config
    files, working directory), so a stack brought up with C(-p NAME), a top-level
    C(name:) or C(COMPOSE_PROJECT_NAME) is acted on as it runs, never as a second copy in
    the directory-named project.
  - Returns C(compose_argv) - I(compose_command) plus C(-p), C(--project-directory) and
    every C(-f) of that project - for the compose commands of an update or a rollback.
  - With I(wait), polls (bounded by wall-clock time) until the container has settled -
    stopped, or running with a Docker health of C(healthy), C(unhealthy) or C(none).
  - Fails when the service runs in more than one project from this file; which one to
    update is then the operator's choice (I(project)).
options:
  compose_command: {type: list, elements: str, default: [], description: argv prefix of compose}
  compose_file: {type: path, required: true, description: the compose file of the service}
  service: {type: str, required: true, description: the compose service}
  project: {type: str, default: "", description: "the compose project to act on (empty: the one it runs in)"}
  wait: {type: float, default: 0, description: seconds to wait for the container to settle}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Read the running container and its compose project
  container_state:
    compose_command: [docker, compose]
    compose_file: /opt/dunebugger/docker-compose.yml
    service: scheduler
  register: before

- name: Wait up to 60 s for the recreated container to settle
  container_state:
    compose_file: /opt/dunebugger/docker-compose.yml
    service: scheduler
    project: "{{ before.project }}"
    wait: 60
"""

RETURN = r"""
project: {description: the compose project the service runs in (null when no container exists), type: str, returned: always}
config_files: {description: the compose files of that project, type: list, elements: str, returned: always}
working_dir: {description: the project's working directory, type: str, returned: always}
compose_argv: {description: "compose argv prefix for that project: command, -p, --project-directory, every -f", type: list, elements: str, returned: always}
exists: {description: whether the service has a container, type: bool, returned: always}
id: {description: the container id, type: str, returned: always}
name: {description: the container name, type: str, returned: always}
image_id: {description: the image id it runs, type: str, returned: always}
image_ref: {description: the image reference it was created from, type: str, returned: always}
status: {description: the container state (running, exited, missing, ...), type: str, returned: always}
running: {description: whether it runs, type: bool, returned: always}
restarting: {description: whether it is restarting, type: bool, returned: always}
exit_code: {description: its last exit code, type: int, returned: always}
health: {description: "Docker health: healthy, unhealthy, starting, or none without a HEALTHCHECK", type: str, returned: always}
version_label: {description: the image's org.opencontainers.image.version label, type: str, returned: always}
"""

import json
import os
import time

from ansible.module_utils.basic import AnsibleModule

VERSION_LABEL = "org.opencontainers.image.version"
PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
CONFIG_FILES = "com.docker.compose.project.config_files"
WORKING_DIR = "com.docker.compose.project.working_dir"
ONEOFF = "com.docker.compose.oneoff"
SETTLED_HEALTH = ("healthy", "unhealthy", "none")


def docker(module, *args):
    rc, out, err = module.run_command(["docker", *args])
    if rc != 0:
        module.fail_json(msg=f"docker {' '.join(args[:3])} failed: {(err or out).strip()}")
    return out


def service_containers(module, service):
    """docker inspect documents of every (non one-off) container labelled as `service`."""
    ids = docker(module, "ps", "-aq", "--no-trunc", "--filter", f"label={SERVICE}={service}").split()
    if not ids:
        return []
    documents = json.loads(docker(module, "inspect", *ids))
    return [d for d in documents if (labels(d).get(ONEOFF) or "False").lower() != "true"]


def labels(document):
    return (document.get("Config") or {}).get("Labels") or {}


def started_from(document, compose_file):
    """Whether the container's project was brought up from `compose_file`."""
    own = os.path.realpath(compose_file)
    files = [f for f in (labels(document).get(CONFIG_FILES) or "").split(",") if f]
    if files:
        return own in {os.path.realpath(f) for f in files}
    # Compose versions that do not record the files: the project's directory.
    return labels(document).get(WORKING_DIR) == os.path.dirname(own)


def project_of(module, containers, forced):
    """(name, config files, working dir) of the project the service runs in, or Nones."""
    projects = {}
    for document in containers:
        tags = labels(document)
        projects.setdefault(tags.get(PROJECT) or "", document)
    if forced:
        projects = {name: doc for name, doc in projects.items() if name == forced}
    if len(projects) > 1:
        module.fail_json(msg=(
            f"service {module.params['service']!r} runs in several compose projects from "
            f"{module.params['compose_file']} ({', '.join(sorted(projects))}): name the one to update "
            "(composeProject / container_compose_project)"))
    if not projects:
        return forced or None, [], None
    name, document = next(iter(projects.items()))
    tags = labels(document)
    files = [f for f in (tags.get(CONFIG_FILES) or "").split(",") if f]
    return name or None, files, tags.get(WORKING_DIR) or None


def compose_argv(command, compose_file, project, files, working_dir):
    argv = list(command)
    if project:
        argv += ["-p", project]
    if working_dir:
        argv += ["--project-directory", working_dir]
    for path in files or [compose_file]:
        argv += ["-f", path]
    return argv


def describe(document):
    if document is None:
        return {"exists": False, "running": False, "restarting": False, "status": "missing",
                "health": "none", "exit_code": None, "id": None, "name": None, "image_id": None,
                "image_ref": None, "version_label": None}
    state = document.get("State") or {}
    config = document.get("Config") or {}
    return {
        "exists": True,
        "id": document.get("Id"),
        "name": (document.get("Name") or "").lstrip("/"),
        "image_id": document.get("Image"),
        "image_ref": config.get("Image"),
        "status": state.get("Status"),
        "running": bool(state.get("Running")),
        "restarting": bool(state.get("Restarting")),
        "exit_code": state.get("ExitCode"),
        "health": (state.get("Health") or {}).get("Status", "none"),
        "version_label": (config.get("Labels") or {}).get(VERSION_LABEL),
    }


def our_containers(module):
    p = module.params
    return [d for d in service_containers(module, p["service"]) if started_from(d, p["compose_file"])]


def pick(containers, project):
    """The project's container of the service, a running one first."""
    if project is not None:
        containers = [d for d in containers if (labels(d).get(PROJECT) or None) == project]
    return min(containers, key=lambda d: not (d.get("State") or {}).get("Running"), default=None)


def settled(state):
    return not state["running"] or state["health"] in SETTLED_HEALTH


def main():
    module = AnsibleModule(
        argument_spec={
            "compose_command": {"type": "list", "elements": "str", "default": []},
            "compose_file": {"type": "path", "required": True},
            "service": {"type": "str", "required": True},
            "project": {"type": "str", "default": ""},
            "wait": {"type": "float", "default": 0},
        },
        supports_check_mode=True,
    )
    p = module.params
    containers = our_containers(module)
    project, files, working_dir = project_of(module, containers, p["project"])
    state = describe(pick(containers, project))
    deadline = time.monotonic() + max(p["wait"], 0)
    while not settled(state) and time.monotonic() < deadline:
        time.sleep(0.5)
        state = describe(pick(our_containers(module), project))
    module.exit_json(
        changed=False,
        project=project,
        config_files=files,
        working_dir=working_dir,
        compose_argv=compose_argv(p["compose_command"], p["compose_file"], project, files, working_dir),
        **state,
    )


if __name__ == "__main__":
    main()
