"""`python -m dunebugger_updater.cli ...`: the same as the `dunebugger-updater` command."""

import sys

from .commands import main

sys.exit(main())
