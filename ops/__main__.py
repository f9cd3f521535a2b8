"""``python -m ops``: operator commands of the fleet.

    python -m ops status [--json]   one table: every stream and periodic program; exit 1 when
                                    something needs a human (listed at the bottom)
    python -m ops status --fleet [--json]
                                    every host's published snapshot (S3) in one table: stream
                                    x host; exit 1 when a host is stale or missing, reports a
                                    problem, or a tracked stream runs on fewer hosts than planned
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

from collector.common.config import Config
from collector.common.errors import ConfigError
from collector.config import load_config


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ops", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    sub = p.add_subparsers(dest="command", required=True)
    st = sub.add_parser("status", help="every stream and periodic program; exit 1 if unhealthy")
    st.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    st.add_argument("--json", action="store_true", help="machine-readable output")
    st.add_argument(
        "--fleet", action="store_true", help="every host's snapshot from S3: stream x host"
    )
    ctl = sub.add_parser("ctl", help="supervisorctl against the fleet's socket")
    ctl.add_argument("--config", type=Path, default=argparse.SUPPRESS)
    ctl.add_argument("args", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    fleet_view = args.command == "status" and args.fleet
    try:
        config = load_config(args.config)
        from ops.fleet import build_fleet_settings

        # the fleet view may run anywhere with the fleet's config (an operator's laptop)
        fleet = build_fleet_settings(config, own_host=not fleet_view)
    except ConfigError as exc:
        print(f"ops: error: {exc}", file=sys.stderr)
        return 2
    if args.command == "ctl":
        exe = str(Path(sys.executable).parent / "supervisorctl")
        os.execv(exe, [exe, "-s", fleet.server_url, *args.args])
    from collector.common.logs import configure_logging
    from ops.status import collect, render_json, render_table

    configure_logging("warning")
    if fleet_view:
        return fleet_status(config, as_json=args.json)
    try:
        status = collect(config)
    except ConfigError as exc:  # a bad [collector] value is found when a stream is shown
        print(f"ops: error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_json(status) if args.json else render_table(status))
    return 0 if status.ok else 1


def fleet_status(config: Config, *, as_json: bool) -> int:
    """``ops status --fleet``: 0 all good, 1 something needs a human, 2 bad config."""
    from ops.fleetstatus import build_view, render_json, render_table
    from ops.sync import s3
    from ops.sync.settings import build_s3_settings

    try:
        s3s = build_s3_settings(config)
        if not s3s.bucket:
            raise ConfigError(f"{config.path} [sync]: status --fleet needs a bucket (it is empty)")
        view = build_view(config, s3.make_client(s3s), s3s)
    except ConfigError as exc:
        print(f"ops: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - listing the bucket failed: one line, no trace
        code = s3.error_code(exc)
        print(f"ops: error: cannot list s3://{s3s.bucket}/{s3s.prefix}: {code}", file=sys.stderr)
        return 2 if code == "NoSuchBucket" else 1
    sys.stdout.write(render_json(view) if as_json else render_table(view))
    return 0 if view.ok else 1


if __name__ == "__main__":
    sys.exit(main())
