"""``python -m ops.sync``: the S3 sync command line.

    run [--dry-run] [--verify]   one run now (exits 0 at once if another run holds the lock),
                                 then this host's status snapshot to {prefix}/{host_id}/_status/
    schedule                     alias of ``python -m ops.periodic sync`` (the supervised loop:
                                 a run every [sync] interval_min until SIGTERM)
    lifecycle --show             print the bucket's lifecycle rules (set by Terraform)

Exit codes: 0 done (or nothing to do), 1 some file failed or the run was aborted, 2 bad config.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from typing import Any

import structlog

from collector.common.alerts import build_alert_settings, configure_alerts
from collector.common.config import Config
from collector.common.errors import ConfigError
from collector.common.locks import LockBusyError, hold_lock
from collector.common.logs import configure_logging
from collector.config import load_config
from ops.periodic import StopFlag
from ops.periodic import main as periodic_main
from ops.sync.publish import publish_status
from ops.sync.run import disabled_reason, plan_dry_run, run_once
from ops.sync.settings import S3Settings, build_s3_settings

log = structlog.get_logger()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", default=argparse.SUPPRESS, help="config file (default: the root config.toml)"
    )
    p = argparse.ArgumentParser(prog="python -m ops.sync", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="config file (default: the root config.toml)")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", parents=[common], help="one sync run now")
    r.add_argument("--dry-run", action="store_true", help="list what would happen, touch nothing")
    r.add_argument(
        "--verify", action="store_true", help="HEAD every ledger entry; re-upload what differs"
    )
    sub.add_parser(
        "schedule",
        parents=[common],
        help="alias of `python -m ops.periodic sync`: a run every interval_min until SIGTERM",
        description="An alias of the fleet's one periodic loop, `python -m ops.periodic sync "
        "--config PATH`: `ops.sync run` every [sync] interval_min (SIGUSR1: now), never two "
        "at once, with the state `ops status` shows; without a bucket it says so once and "
        "idles. SIGTERM stops it (exit 0).",
    )
    lc = sub.add_parser("lifecycle", parents=[common], help="the bucket's lifecycle rules")
    lc.add_argument("--show", action="store_true", required=True, help="print them")
    return p


def _stop_on_signals() -> StopFlag:
    stop = StopFlag()

    def handler(signum: int, frame: Any) -> None:
        stop.set()  # nothing else here: no logging, no locks (see StopFlag)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _cmd_run(s: S3Settings, dry_run: bool, verify: bool, config: Config) -> int:
    if dry_run:
        uploads, deletions, young = plan_dry_run(s)
        for f in uploads:
            print(f"upload {f.rel} -> s3://{s.bucket or '(no bucket)'}/{s.key_for(f.rel)}")
        for f in deletions:
            print(f"delete {f.rel} (after a HEAD confirms it in S3)")
        print(
            f"{len(uploads)} to upload ({sum(f.size for f in uploads)} bytes),"
            f" {len(deletions)} to delete locally, {young} too young"
        )
        return 0
    reason = disabled_reason(s)
    if reason is not None:
        log.warning("sync.disabled", reason=reason)
        return 0
    stop = _stop_on_signals()
    try:
        with hold_lock(s.lock_path):
            sm = run_once(s, verify=verify, stop=stop, bar=sys.stderr.isatty())
            published = publish_status(config, s)  # ops status --fleet reads it
    except LockBusyError:
        log.info("sync.busy", detail="another sync is running")
        return 0
    return 1 if sm.failures or sm.aborted not in ("", "stopped") or not published else 0


def _cmd_lifecycle(s: S3Settings) -> int:
    reason = disabled_reason(s)
    if reason is not None:
        print(reason, file=sys.stderr)
        return 2
    from ops.sync import s3

    client = s3.make_client(s)
    try:
        r = client.get_bucket_lifecycle_configuration(Bucket=s.bucket)
    except Exception as exc:
        if s3.error_code(exc) == "NoSuchLifecycleConfiguration":
            print(f"s3://{s.bucket}: no lifecycle configuration")
            return 0
        print(f"s3://{s.bucket}: {s3.error_code(exc)}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"bucket": s.bucket, "rules": r.get("Rules", [])}, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging()
    try:
        config = load_config(args.config)
        settings = build_s3_settings(config)
        alerts = build_alert_settings(config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "schedule":  # the one loop runs `ops.sync run` (config checked above)
        return periodic_main(["sync", "--config", str(config.path)])
    if args.command == "run":
        configure_alerts(alerts)  # failures and lost files alert (flushed at exit)
        return _cmd_run(settings, args.dry_run, args.verify, config)
    return _cmd_lifecycle(settings)


if __name__ == "__main__":
    sys.exit(main())
