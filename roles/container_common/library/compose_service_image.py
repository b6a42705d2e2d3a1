#!/usr/bin/python
"""Read or change the image tag of one service in a compose file, touching nothing else."""

from __future__ import annotations

DOCUMENTATION = r"""
module: compose_service_image
short_description: Read or set the image tag of one compose service, byte for byte
description:
  - Finds C(services.<service>.image) with the YAML parser and rewrites only the
    characters of that value, so comments, order, quoting and formatting of the rest
    of the file stay exactly as they were. The file is replaced atomically, keeping
    its mode, owner and group.
options:
  path: {type: path, required: true, description: the compose file}
  service: {type: str, required: true, description: the compose service}
  repository: {type: str, description: the image must use this repository (no tag)}
  tag: {type: str, description: the tag to set; omit to only read}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Read the service's image in the compose file
  compose_service_image:
    path: /opt/dunebugger/docker-compose.yml
    service: scheduler
    repository: ghcr.io/marco-svitol/dunebugger-scheduler
  register: compose

- name: Set the new image tag
  compose_service_image:
    path: /opt/dunebugger/docker-compose.yml
    service: scheduler
    repository: ghcr.io/marco-svitol/dunebugger-scheduler
    tag: 1.2.0
"""

RETURN = r"""
image: {description: the service's image after the call, type: str, returned: success}
repository: {description: its repository (no tag), type: str, returned: success}
tag: {description: its tag after the call, type: str, returned: success}
previous_tag: {description: its tag before the call, type: str, returned: success}
path: {description: the compose file, type: str, returned: success}
service: {description: the compose service, type: str, returned: success}
"""

import contextlib
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule

try:
    import yaml
except ImportError:  # pragma: no cover - reported to the user below
    yaml = None

TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def find_image_node(text, service):
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    services = mapping_value(root, "services")
    entry = mapping_value(services, service)
    if entry is None:
        return None, f"service {service!r} is not in the compose file"
    node = mapping_value(entry, "image")
    if node is None or not isinstance(node, yaml.ScalarNode):
        return None, f"service {service!r} has no image"
    return node, None


def mapping_value(node, key):
    if not isinstance(node, yaml.MappingNode):
        return None
    for key_node, value_node in node.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def split_image(image):
    name = image.split("@", 1)[0]
    head, _, last = name.rpartition("/")
    if ":" in last:
        last, tag = last.split(":", 1)
    else:
        tag = None
    return (f"{head}/{last}" if head else last), tag


def rewrite(text, node, new_value):
    start, end = node.start_mark.index, node.end_mark.index
    original = text[start:end]
    quote = original[0] if original[:1] in ("'", '"') else ""
    return text[:start] + quote + new_value + quote + text[end:]


def write_atomically(path, text):
    """Replace the file with `text`, keeping its mode, owner and group."""
    directory = os.path.dirname(path) or "."
    before = os.stat(path)
    fd, tmp = tempfile.mkstemp(prefix=".compose-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
            with contextlib.suppress(PermissionError):  # only root may give a file away
                os.fchown(handle.fileno(), before.st_uid, before.st_gid)
            os.fchmod(handle.fileno(), before.st_mode & 0o7777)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def main():
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "path", "required": True},
            "service": {"type": "str", "required": True},
            "repository": {"type": "str"},
            "tag": {"type": "str"},
        },
        supports_check_mode=True,
    )
    if yaml is None:
        module.fail_json(msg="PyYAML is needed on the device (python3-yaml)")
    path, service, wanted_repo, tag = (module.params[k] for k in ("path", "service", "repository", "tag"))
    if tag is not None and not TAG.match(tag):
        module.fail_json(msg=f"invalid image tag {tag!r}")
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        module.fail_json(msg=f"cannot read the compose file {path}: {exc.strerror}")
    try:
        node, problem = find_image_node(text, service)
    except yaml.YAMLError as exc:
        module.fail_json(msg=f"the compose file {path} is not valid YAML: {exc}")
    if problem:
        module.fail_json(msg=f"{path}: {problem}")
    repository, current_tag = split_image(node.value)
    result = {"path": path, "service": service, "image": node.value, "repository": repository,
              "tag": current_tag, "previous_tag": current_tag}
    if wanted_repo and repository != wanted_repo:
        module.fail_json(msg=f"{path}: service {service!r} uses {repository}, not {wanted_repo}", **result)
    if tag is None or tag == current_tag:
        module.exit_json(changed=False, **result)
    result.update(image=f"{repository}:{tag}", tag=tag)
    if not module.check_mode:
        write_atomically(path, rewrite(text, node, f"{repository}:{tag}"))
    module.exit_json(changed=True, **result)


if __name__ == "__main__":
    main()
