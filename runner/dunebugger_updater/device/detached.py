"""The child process of `PlaybookRunner.run_detached`: runs one prepared playbook run
(its extra-vars are already in the run's data dir) in a session of its own.

    python -m dunebugger_updater.device.detached RUNS_DIR PLAYBOOK RUN_ID TIMEOUT_SECONDS
"""

from __future__ import annotations

import sys
from pathlib import Path

from .playbooks import PlaybookRunner


def main(argv: list[str]) -> int:
    runs_dir, name, run_id, timeout = argv
    run = PlaybookRunner(Path(runs_dir), timeout_seconds=float(timeout)).run(name, None, run_id=run_id)
    return 0 if run.succeeded else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
