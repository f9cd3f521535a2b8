"""Entry point of ``secmaster`` (console script) and ``python -m secmaster``."""

from __future__ import annotations

import sys

from secmaster.cli import main as cli_main


def main() -> None:
    sys.exit(cli_main(sys.argv[1:]))


if __name__ == "__main__":
    main()
