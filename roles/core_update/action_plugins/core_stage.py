"""core_stage, with the release archive on the controller.

On a remote device the archive is sent into the task's own temporary directory on the
device and the module reads it from there and removes it: one task and one module
execution, where a copy task would add a stat and a copy module run. On the device
itself (a local connection) the module reads the archive where it is.
"""

from __future__ import annotations

import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        super().run(tmp, task_vars)
        args = dict(self._task.args)
        tmpdir = self._connection._shell.tmpdir
        try:
            if self._connection.transport != "local":
                if not os.path.isfile(args["src"]):
                    raise AnsibleActionFail(f"the release archive {args['src']} is not a file on the controller")
                sent = self._connection._shell.join_path(tmpdir, "release.tar.gz")
                self._transfer_file(args["src"], sent)
                self._fixup_perms2((tmpdir, sent))
                args.update(src=sent, remove_src=True)
            return self._execute_module(module_name="core_stage", module_args=args, task_vars=task_vars)
        finally:
            self._remove_tmp_path(tmpdir)
