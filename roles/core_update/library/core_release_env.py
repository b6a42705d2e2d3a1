#!/usr/bin/python
"""The virtualenv of a staged core release, and its requirements."""

from __future__ import annotations

DOCUMENTATION = r"""
module: core_release_env
short_description: Create a release's virtualenv without pip and install its requirements from outside it
description:
  - Creates I(venv) with C(python -m venv --without-pip) (bootstrapping pip into every
    release costs seconds and is not needed), unless it exists.
  - Installs I(requirements) when it names anything, with an installer running from
    outside the venv - C(uv pip install --python VENV) when C(uv) is on PATH, else
    C(python -m pip --python VENV install) (pip 22.3 or newer with I(python)); only when
    neither works is pip bootstrapped into the venv and run from there.
  - Nothing at all is installed when there is no requirements file or it is empty.
options:
  python: {type: str, default: python3, description: interpreter that creates the venv}
  venv: {type: path, required: true, description: the venv directory (inside the release)}
  venv_args: {type: list, elements: str, default: [], description: extra arguments of python -m venv}
  requirements: {type: path, description: the release's requirements.txt}
  pip_args: {type: list, elements: str, default: [], description: extra install arguments, e.g. --no-index --find-links DIR}
  installer: {type: str, choices: [auto, uv, pip, venv-pip], default: auto, description: which installer to use}
author: dunebugger-updater
"""

EXAMPLES = r"""
- name: Create the release virtualenv and install its requirements
  core_release_env:
    python: python3
    venv: /opt/dunebugger/releases/core/1.2.0/.venv
    requirements: /opt/dunebugger/releases/core/1.2.0/requirements.txt
    pip_args: [--no-index, --find-links, /opt/wheels]
"""

RETURN = r"""
created: {description: whether the venv was created now, type: bool, returned: always}
installer: {description: the installer used (none when nothing was installed), type: str, returned: always, sample: pip}
seconds: {description: time spent creating and installing, type: float, returned: always}
"""

import os
import shutil
import subprocess
import time

from ansible.module_utils.basic import AnsibleModule


class InstallError(Exception):
    pass


def run(argv):
    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in (done.stderr or done.stdout).strip().splitlines() if line.strip()]
        raise InstallError(f"{' '.join(argv[:4])} … failed (rc={done.returncode})" + (f": {lines[-1]}" if lines else ""))


def names_something(requirements):
    try:
        with open(requirements, encoding="utf-8") as handle:
            return any(line.strip() and not line.lstrip().startswith("#") for line in handle)
    except OSError:
        return False


def pip_understands_python(python):
    """pip 22.3+ installs into another interpreter's environment (--python)."""
    done = subprocess.run([python, "-m", "pip", "--python", python, "--version"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, check=False)
    return done.returncode == 0


def install(p, venv_python):
    common = ["-r", p["requirements"], *p["pip_args"]]
    choice = p["installer"]
    if choice in ("auto", "uv") and shutil.which("uv"):
        run(["uv", "pip", "install", "--quiet", "--python", venv_python, *common])
        return "uv"
    if choice == "uv":
        raise InstallError("installer uv was asked for, but uv is not on PATH")
    if choice in ("auto", "pip") and pip_understands_python(p["python"]):
        run([p["python"], "-m", "pip", "--python", venv_python, "install", "--disable-pip-version-check",
             "--no-input", "--quiet", *common])
        return "pip"
    if choice == "pip":
        raise InstallError(f"{p['python']} -m pip cannot install into another environment (pip 22.3+ needed)")
    run([venv_python, "-m", "ensurepip", "--default-pip"])
    run([venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", *common])
    return "venv-pip"


def main():
    module = AnsibleModule(
        argument_spec={
            "python": {"type": "str", "default": "python3"},
            "venv": {"type": "path", "required": True},
            "venv_args": {"type": "list", "elements": "str", "default": []},
            "requirements": {"type": "path"},
            "pip_args": {"type": "list", "elements": "str", "default": []},
            "installer": {"type": "str", "choices": ["auto", "uv", "pip", "venv-pip"], "default": "auto"},
        },
    )
    p = module.params
    started = time.monotonic()
    venv_python = os.path.join(p["venv"], "bin", "python")
    created = not os.path.exists(venv_python)
    installer = "none"
    try:
        if created:
            run([p["python"], "-m", "venv", "--without-pip", *p["venv_args"], p["venv"]])
        if p["requirements"] and names_something(p["requirements"]):
            installer = install(p, venv_python)
    except InstallError as exc:
        module.fail_json(msg=str(exc), created=created)
    module.exit_json(changed=created or installer != "none", created=created, installer=installer,
                     seconds=round(time.monotonic() - started, 2))


if __name__ == "__main__":
    main()
