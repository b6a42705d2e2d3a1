"""Sandbox for exercising the core playbooks without a real device.

* :mod:`.app` is a stand-in for the core application (``GET /health``).
* :mod:`.appctl` is a ``command`` service manager that runs it detached.
* :mod:`.releases` builds release tarballs of it and sandboxes.

Everything here is standard library only, so it also runs inside release venvs
that have no third-party packages.
"""
