"""``python -m ops.dataset``: build the one dataset from every host's copies.

    build (--date YYYY-MM-DD | --since DURATION) [--hosts H1,H2] [--source [NAME=]DIR ...]
          [--out DIR]     build those hours now (every hour with a copy; the current hour
                          too, from what has been delivered of it)
    run [--hosts ...] [--source ...] [--out DIR]
                          one periodic run: every hour of the last [dataset] lookback_h that
                          is ready and not built yet (or whose inputs changed since)

Inputs: the hosts' delivered objects under s3://{[sync] bucket}/{[sync] prefix}/{host}/
(hosts found by listing, unless --hosts or [dataset] hosts names them), or local data
directories (--source, one per host; NAME defaults to the directory's name). Output:
s3://{bucket}/{[dataset] prefix}/..., or --out / [dataset] out_dir.

A run holds {data_dir}/.dataset/build.lock (another run: says so, exit 0). Prints one
summary line. Exit codes: 0 done (or nothing to do), 1 an hour failed, 2 bad input (a
date, a duration, a host or a directory that is not one, no hosts, no bucket).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import structlog

from collector.common.errors import ConfigError
from collector.common.layout import HOUR_MS
from collector.common.locks import LockBusyError, hold_lock
from collector.common.logs import configure_logging
from collector.config import load_config
from ops.dataset.backfill import Fetcher
from ops.dataset.build import Builder, Progress, Summary, hours_between, summary_fields
from ops.dataset.inventory import Inventory, discover_hosts
from ops.dataset.settings import DatasetSettings, build_dataset_settings, check_hosts
from ops.dataset.store import LocalStore, S3Store, Store, StoreError, check_bucket, make_s3_client
from qa.__main__ import parse_duration

log = structlog.get_logger()


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="config file")
    common.add_argument("--hosts", default=None, help="comma-separated host ids to merge")
    common.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[NAME=]DIR",
        help="a host's local data dir (repeat per host) instead of S3",
    )
    common.add_argument("--out", default=None, help="write the dataset into this directory")
    p = argparse.ArgumentParser(prog="python -m ops.dataset", description=__doc__.splitlines()[0])
    p.add_argument("--config", default=None, help="config file (default: the root config.toml)")
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", parents=[common], help="build the hours of a date or duration")
    when = b.add_mutually_exclusive_group(required=True)
    when.add_argument("--date", help="a UTC date, YYYY-MM-DD")
    when.add_argument("--since", help="the hours that ended within 2h, 30m, 1d ...")
    sub.add_parser("run", parents=[common], help="one periodic run (ready hours not yet built)")
    return p


def _hours(args: argparse.Namespace, now_s: float, settings: DatasetSettings) -> list[int]:
    """The hours asked for (only hours that have ended)."""
    now_ms = int(now_s * 1000)
    if args.command == "run":
        start = now_ms - int(settings.lookback_s * 1000)
        return [h for h in hours_between(start, now_ms) if h + HOUR_MS <= now_ms]
    if args.date is not None:
        try:
            day = datetime.strptime(args.date, "%Y-%m-%d").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError(f"--date {args.date!r} must be a UTC date YYYY-MM-DD") from None
        if day.strftime("%Y-%m-%d") != args.date:
            raise ConfigError(f"--date {args.date!r} must be a UTC date YYYY-MM-DD")
        start = int(day.timestamp() * 1000)
        return [h for h in hours_between(start, start + 24 * HOUR_MS) if h <= now_ms]
    try:
        since_s = parse_duration(args.since)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    # build also takes the current hour (what has been delivered of it so far)
    return list(hours_between(now_ms - int(since_s * 1000), now_ms + 1))


def _local_sources(specs: list[str]) -> dict[str, Store]:
    out: dict[str, Store] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        directory = Path(path if sep else spec)
        host = name if sep else directory.resolve().name
        if not directory.is_dir():
            raise ConfigError(f"--source {spec!r}: {str(directory)!r} is not a directory")
        check_hosts([host], what=f"--source {spec!r}")
        if host in out:
            raise ConfigError(f"--source {spec!r}: host {host!r} given twice")
        out[host] = LocalStore(directory)
    return out


def _open(
    args: argparse.Namespace, settings: DatasetSettings
) -> tuple[dict[str, Store], Store, Inventory]:
    """Input stores per host and the output store; raises ConfigError/StoreError."""
    s3 = settings.s3
    wanted = (
        check_hosts([h for h in args.hosts.split(",") if h], what="--hosts")
        if args.hosts is not None
        else settings.hosts
    )
    inv = Inventory()
    client = None
    if s3.bucket and (not args.source or (args.out is None and settings.out_dir is None)):
        client = make_s3_client(s3)
        check_bucket(client, s3.bucket, s3.prefix)
    if args.source:
        sources = _local_sources(args.source)
        if wanted:
            sources = {h: st for h, st in sources.items() if h in wanted}
    else:
        if client is None:
            raise ConfigError("no input: give --source DIR per host or set [sync] bucket")
        root = S3Store(client, s3.bucket, s3.prefix)
        hosts = list(wanted) or discover_hosts(root, inv)
        sources = {h: S3Store(client, s3.bucket, f"{s3.prefix.strip('/')}/{h}") for h in hosts}
    if not sources:
        raise ConfigError("no hosts to merge (none found, none given)")
    out_dir = Path(args.out) if args.out is not None else settings.out_dir
    out: Store
    if out_dir is not None:
        out = LocalStore(out_dir)
    elif client is not None:
        out = S3Store(client, s3.bucket, settings.prefix)
    else:
        raise ConfigError("no output: give --out DIR, set [dataset] out_dir or [sync] bucket")
    return sources, out, inv


def execute(
    settings: DatasetSettings,
    sources: dict[str, Store],
    out: Store,
    hours: list[int],
    *,
    only_ready: bool,
    now_s: float,
    fetcher: Fetcher | None = None,
) -> Summary:
    """Build ``hours`` (``only_ready``: the ready ones whose inputs changed)."""
    t0 = time.monotonic()
    fetcher = fetcher or Fetcher(budget=settings.rest_budget, share=settings.rest_share)
    builder = Builder(settings, sources, out, fetcher)
    sm = builder.summary
    try:
        inv = builder.inventory(hours)
        wanted = set(hours)
        todo = sorted(
            (h, stream) for stream, by_hour in inv.files.items() for h in by_hour if h in wanted
        )
        progress = Progress(len(todo))
        days: set[str] = set()
        for hour_ms, stream in todo:
            sm.hours += 1
            if only_ready:
                if not builder.ready(inv, stream, hour_ms, now_s):
                    sm.waiting += 1
                    progress.advance(sm)
                    continue
                fp = builder.fingerprint(builder.inputs(inv, stream, hour_ms))
                if builder.previous(stream, hour_ms) == fp:
                    sm.unchanged += 1
                    progress.advance(sm)
                    continue
            try:
                builder.build_hour(inv, stream, hour_ms)
            except StoreError:
                raise
            except Exception:  # one hour's crash must not stop the others
                log.exception("dataset.hour_failed", stream=str(stream), hour=hour_ms)
                sm.failed += 1
                if len(sm.failed_hours) < 20:
                    sm.failed_hours.append(f"{stream.exchange}/{stream.symbol}/{hour_ms}")
            else:
                sm.built += 1
                days.add(datetime.fromtimestamp(hour_ms / 1000, UTC).strftime("%Y-%m-%d"))
            progress.advance(sm)
        builder.write_completeness(days)
    finally:
        fetcher.close()
        sm.seconds = round(time.monotonic() - t0, 3)
    (log.warning if sm.failed else log.info)("dataset.summary", **summary_fields(sm))
    return sm


def main(argv: Sequence[str] | None = None) -> int:
    """The program: logging configured once (JSON on stderr unless a TTY), then :func:`run`."""
    configure_logging()
    return run(argv)


def run(argv: Sequence[str] | None = None) -> int:
    """One command with logging as already configured; returns the exit code."""
    args = _parser().parse_args(argv)
    now_s = time.time()
    try:
        config = load_config(args.config)
        settings = build_dataset_settings(config)
        hours = _hours(args, now_s, settings)
        sources, out, inv = _open(args, settings)
    except (ConfigError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        with hold_lock(settings.lock_path):
            sm = execute(
                settings, sources, out, hours, only_ready=args.command == "run", now_s=now_s
            )
    except LockBusyError:
        print("dataset: another build is running")
        return 0
    except StoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    sm.refused_keys += inv.refused
    print(sm.line())
    return 1 if sm.failed else 0


if __name__ == "__main__":
    sys.exit(main())
