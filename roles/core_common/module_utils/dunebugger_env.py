# The virtualenv of a staged core release and its requirements (the core_stage module).
# Standard library only, Python 3.9+.
#
# The venv is created without pip: bootstrapping pip into every release costs seconds.
# The requirements are installed by an installer running from outside the venv - uv when
# it is on PATH, else the device's pip with --python (pip 22.3+) - and only when neither
# can is pip bootstrapped into the venv and run from there.

from __future__ import annotations

import os
import shutil
import subprocess
import time

INSTALLERS = ("auto", "uv", "pip", "venv-pip")
PIP_WITH_PYTHON_OPTION = (22, 3)


class InstallError(Exception):
    pass


def run(argv, cwd=None):
    try:
        done = subprocess.run(argv, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InstallError(f"cannot run {argv[0]}: {exc}") from None
    if done.returncode != 0:
        said = what_went_wrong(done.stderr or done.stdout)
        raise InstallError(f"{' '.join(argv[:4])} … failed (rc={done.returncode})" + (f": {said}" if said else ""))
    return done.stdout


def what_went_wrong(output):
    """The installer's own error lines (pip's `ERROR:`, uv's `error:` and what follows it),
    else its last line: pip ends with hints, carets and hashes that say nothing alone."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    errors = [index for index, line in enumerate(lines) if line.lower().startswith("error:")]
    if not errors:
        return lines[-1] if lines else ""
    said = lines[errors[0]:errors[0] + 4] if lines[errors[0]].lower() == "error:" else [lines[i] for i in errors]
    return " ".join(said)[:1000]


def names_something(requirements):
    try:
        with open(requirements, encoding="utf-8") as handle:
            return any(line.strip() and not line.lstrip().startswith("#") for line in handle)
    except OSError:
        return False


def pip_version(python):
    """The version of `python`'s pip as a tuple, () without one. Read from its metadata:
    starting pip itself only to ask costs half a second on a small device."""
    try:
        out = run([python, "-c", "import importlib.metadata as m; print(m.version('pip'))"])
    except InstallError:
        return ()
    numbers = []
    for part in out.strip().split("."):
        if not part.isdigit():
            break
        numbers.append(int(part))
    return tuple(numbers)


def install(python, venv_python, requirements, pip_args, installer):
    """Install `requirements` into the venv of `venv_python`; the installer used. Run in
    the requirements' directory (the release), where their relative paths point."""
    common = ["-r", requirements, *pip_args]
    release = os.path.dirname(requirements)
    if installer in ("auto", "uv") and shutil.which("uv"):
        run(["uv", "pip", "install", "--quiet", "--python", venv_python, *common], cwd=release)
        return "uv"
    if installer == "uv":
        raise InstallError("installer uv was asked for, but uv is not on PATH")
    if installer in ("auto", "pip") and pip_version(python) >= PIP_WITH_PYTHON_OPTION:
        run([python, "-m", "pip", "--python", venv_python, "install", "--disable-pip-version-check",
             "--no-input", "--quiet", *common], cwd=release)
        return "pip"
    if installer == "pip":
        raise InstallError(f"{python} -m pip cannot install into another environment (pip 22.3+ needed)")
    run([venv_python, "-m", "ensurepip", "--default-pip"])
    run([venv_python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--quiet", *common],
        cwd=release)
    return "venv-pip"


def create_env(python, venv, venv_args=(), requirements=None, pip_args=(), installer="auto"):
    """Create `venv` in a freshly extracted release (a release may not ship one) and
    install `requirements` when they name anything: {installer ("none" when nothing was
    installed), seconds}."""
    started = time.monotonic()
    run([python, "-m", "venv", "--without-pip", *venv_args, venv])
    used = "none"
    if requirements and names_something(requirements):
        used = install(python, os.path.join(venv, "bin", "python"), requirements, list(pip_args), installer)
    return {"installer": used, "seconds": round(time.monotonic() - started, 2)}
