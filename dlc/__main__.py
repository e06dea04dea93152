"""``python -m dlc``: the same as the ``dlc`` command."""

import sys

from dlc.cli import main

sys.exit(main())
