#!/usr/bin/python
"""The installed version of each DuneBugger component on one device, read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: installed_versions
short_description: Read the installed version of DuneBugger components, changing nothing
description:
  - A python_app's version is its VERSION file (a JSON object with a C(version) key, or
    one plain line); a missing file means not installed.
  - A container component's version is the image tag of its running compose container
    (else the image's C(org.opencontainers.image.version) label), else the tag of its
    service in the compose file. The engine is asked once for all components (C(docker
    ps), argv, no shell), and only when C(docker) is installed.
  - One module execution per device, whatever the number of components.
options:
  components:
    type: dict
    required: true
    description: component name -> {type (python_app or container), service (the compose service)}
  version_file: {type: path, description: VERSION file of the python_app}
  compose_file: {type: path, description: compose file of the container components}
  compose_project: {type: str, default: "", description: compose project to read ("" = the one running)}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Read the installed versions of core and remote
  installed_versions:
    components: {core: {type: python_app}, remote: {type: container, service: remote}}
    version_file: /opt/dunebugger/core/VERSION
    compose_file: /opt/dunebugger/docker-compose.yml
"""

RETURN = r"""
versions:
  description: component name -> {version (null when not installed), error ("" when it could be read)}
  type: dict
  returned: always
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
except ImportError:  # reported per component below
    yaml = None

MAX_VERSION_FILE_BYTES = 64 * 1024
LABELS = ("com.docker.compose.service", "com.docker.compose.project", "com.docker.compose.project.config_files",
          "com.docker.compose.project.working_dir", "org.opencontainers.image.version")


def version_file(path):
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_VERSION_FILE_BYTES + 1)
    except FileNotFoundError:
        return None, ""
    except OSError as exc:
        return None, f"cannot read {path}: {exc.strerror}"
    text = data[:MAX_VERSION_FILE_BYTES].decode("utf-8", errors="replace").strip()
    if text.startswith("{"):
        try:
            value = json.loads(text).get("version")
        except (ValueError, AttributeError):
            return None, f"{path} is not valid JSON"
        return (value.strip() or None, "") if isinstance(value, str) else (None, f"{path} has no version")
    return (text.splitlines()[0].strip() or None) if text else None, ""


def image_tag(image):
    last = image.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def running_versions(module, compose_file, project):
    """service -> version of its running container started from compose_file."""
    docker = module.get_bin_path("docker")
    if docker is None:
        return {}
    fields = "\t".join(f'{{{{.Label "{label}"}}}}' for label in LABELS) + "\t{{.Image}}"
    rc, out, _ = module.run_command([docker, "ps", "--filter", "label=com.docker.compose.service",
                                     "--format", fields])
    if rc != 0:
        return {}
    own = os.path.realpath(compose_file)
    found = {}
    for line in out.splitlines():
        service, running_project, files, working_dir, label, image = (line.split("\t") + [""] * 6)[:6]
        files = [os.path.realpath(f) for f in files.split(",") if f]
        started_here = own in files if files else working_dir == os.path.dirname(own)
        if started_here and (not project or running_project == project):
            found.setdefault(service, image_tag(image) or label or None)
    return found


def compose_tag(compose_file, service):
    if yaml is None:
        return None, "python3-yaml is missing on the device"
    try:
        with open(compose_file, encoding="utf-8") as handle:
            document = yaml.safe_load(handle)
    except FileNotFoundError:
        return None, ""
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return None, f"cannot read {compose_file}: {exc}"
    services = document.get("services") if isinstance(document, dict) else None
    entry = services.get(service) if isinstance(services, dict) else None
    image = entry.get("image") if isinstance(entry, dict) else None
    return (image_tag(image) if isinstance(image, str) else None), ""


def main():
    module = AnsibleModule(
        argument_spec={
            "components": {"type": "dict", "required": True},
            "version_file": {"type": "path"},
            "compose_file": {"type": "path"},
            "compose_project": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    containers = {name: spec.get("service") or name for name, spec in p["components"].items()
                  if spec.get("type") == "container"}
    running = running_versions(module, p["compose_file"], p["compose_project"]) if containers else {}
    versions = {}
    for name, _spec in p["components"].items():
        if name in containers:
            version, error = (running[containers[name]], "") if running.get(containers[name]) \
                else compose_tag(p["compose_file"], containers[name])
        else:
            version, error = version_file(p["version_file"])
        versions[name] = {"version": version, "error": error}
    module.exit_json(changed=False, versions=versions)


if __name__ == "__main__":
    main()
