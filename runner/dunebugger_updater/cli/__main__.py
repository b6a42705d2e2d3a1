"""`python -m dunebugger_updater.cli ...`: the same as the `dunebugger-updater` command."""

import sys

from . import main

sys.exit(main())
