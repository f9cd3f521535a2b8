"""``python -m ops.replay``: see ``ops.replay.cli``."""

from __future__ import annotations

import sys

from ops.replay.cli import main

if __name__ == "__main__":
    sys.exit(main())
