"""``python -m ops``: operator commands of the fleet.

    python -m ops status [--json]   one table: every stream and periodic program; exit 1 when
                                    something needs a human (listed at the bottom)
    python -m ops ctl ARGS...       supervisorctl against the fleet's socket (wherever the
                                    config's data_dir puts it), e.g. ``ctl stop collector:*``

Exit codes: 0 all good, 1 something needs a human, 2 bad config.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from collector.common.errors import ConfigError
from collector.config import load_config


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="every stream and periodic program; exit 1 if unhealthy")
    st.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    ctl = sub.add_parser("ctl", help="supervisorctl against the fleet's socket")
    ctl.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    ctl.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    try:
        config = load_config(args.config)
        from ops.fleet import build_fleet_settings

        fleet = build_fleet_settings(config)
    except ConfigError as exc:
        print(f"ops: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "ctl":
        exe = str(Path(sys.executable).parent / "supervisorctl")
        os.execv(exe, [exe, "-s", fleet.server_url, *args.args])
    from collector.common.logs import configure_logging
    from ops.status import collect, render_json, render_table

    configure_logging("warning")
    try:
        status = collect(config)
    except ConfigError as exc:  # a bad [collector] value is found when a stream is shown
        print(f"ops: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_json(status) if args.json else render_table(status))
    return 0 if status.ok else 1


if __name__ == "__main__":
    sys.exit(main())
