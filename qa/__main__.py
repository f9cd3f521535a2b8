"""``python -m qa``: run the checks, print a report.

    python -m qa run [--since 2h] [--path P ...] [--force]   one run over files needing QA
    python -m qa report FILE [--json]                        a readable report of one file
    python -m qa completeness [--since 24h | --day D] [--json]   the ledger per stream and hour
    python -m qa schedule [--every MIN]                      alias of ``python -m ops.periodic qa``

All take ``--config PATH`` and ``--data-dir DIR``. Bad input → one line on stderr, exit 2
(an empty or missing data dir, a ``--path`` outside the data dir, a bad config...).

``run`` stops between files on SIGTERM/SIGINT (exit 0). The periodic program is the fleet's
one loop, ``python -m ops.periodic qa`` (every ``[qa] interval_min``): ``schedule`` and ``run
--every MIN`` check their arguments, then exec it (``run --every`` passes ``--path`` and
``--since`` on to each run), so the run lock, the state file ``ops status`` reads and the
signal handling are the loop's.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import orjson
import structlog

from collector.common import layout
from collector.common.alerts import build_alert_settings, configure_alerts, flush_alerts
from collector.common.config import check_path_value
from collector.common.errors import ConfigError
from collector.common.locks import LockBusyError
from collector.common.logs import configure_logging
from collector.config import load_config
from qa import completeness, runner
from qa.settings import QASettings, build_qa_settings

log = structlog.get_logger()

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``90s``, ``30m``, ``2h``, ``1d`` → seconds; ValueError otherwise."""
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"--since {text!r} must be a number with s, m, h or d (e.g. 2h)")
    return float(m.group(1)) * _UNIT_S[m.group(2)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m qa", description="Data quality checks.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    common.add_argument(
        "--data-dir",
        "--data_dir",
        default=None,
        dest="data_dir",
        help="data directory (default: the config's data_dir)",
    )
    common.add_argument("--log-level", default="info")
    sub = p.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", parents=[common], help="check files that have no fresh report")
    run.add_argument("--since", default=None, help="only files modified in the last 2h, 30m...")
    run.add_argument(
        "--path",
        action="append",
        default=[],
        help="a file or directory to check (repeatable; default: the data dir)",
    )
    run.add_argument("--force", action="store_true", help="check even files with a report")
    run.add_argument(
        "--every",
        type=float,
        default=None,
        help="repeat every N minutes: alias of `python -m ops.periodic qa --every N`",
    )
    sched = sub.add_parser(
        "schedule",
        parents=[common],
        help="alias of `python -m ops.periodic qa`: run every interval, until SIGTERM",
        description="An alias of the fleet's one periodic loop: checks its arguments, then "
        "execs `python -m ops.periodic qa --config PATH [--data-dir DIR] [--every MIN]`, which "
        "runs `qa run` every interval (SIGUSR1: now), never two at once, and writes the state "
        "`ops status` shows; SIGTERM stops it (exit 0).",
    )
    sched.add_argument(
        "--every",
        type=float,
        default=None,
        help="minutes between runs (default: [qa] interval_min)",
    )
    rep = sub.add_parser("report", parents=[common], help="print the report of a file")
    rep.add_argument("file")
    rep.add_argument("--json", action="store_true", help="print the JSON report")
    comp = sub.add_parser(
        "completeness",
        parents=[common],
        help="the completeness ledger per stream and UTC hour",
        description="What the completeness records QA wrote say, per stream and closed UTC "
        "hour: connected time, gaps, trade ids written/expected, seconds out of sync, bad "
        "frames, complete or not (README, Data quality).",
    )
    when = comp.add_mutually_exclusive_group()
    when.add_argument("--since", default="24h", help="hours that started in the last 24h (default)")
    when.add_argument("--day", default=None, help="one UTC day as a grid of hours: 2026-12-01")
    comp.add_argument("--json", action="store_true", help="print the hours as JSON")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config)
        data_dir = None
        if args.data_dir is not None:
            data_dir = check_path_value(args.data_dir, what="--data-dir")
        settings = build_qa_settings(config, data_dir=data_dir)
        paths = [check_path_value(p, what="--path") for p in getattr(args, "path", [])]
        if args.cmd != "report":
            if not settings.data_dir.is_dir():
                # QA only reads: a data dir that is not there is a typo, not a new host
                raise ValueError(f"data dir {str(settings.data_dir)!r} is not a directory")
            runner.check_paths(settings.data_dir, paths)
        since_s = parse_duration(args.since) if getattr(args, "since", None) else None
        if getattr(args, "day", None) is not None and not layout.DATE_DIR.fullmatch(args.day):
            raise ValueError(f"--day {args.day[:40]!r} must be a UTC day like 2026-12-01")
        every = getattr(args, "every", None)
        if every is not None and every <= 0:
            raise ValueError(f"--every {every} must be > 0")
        alert_settings = build_alert_settings(config, data_dir=settings.data_dir)
    except (ConfigError, ValueError) as exc:
        print(f"qa: {exc}", file=sys.stderr)
        return 2
    if args.cmd == "report":
        try:
            file = check_path_value(args.file, what="FILE")
        except ConfigError as exc:
            print(f"qa: {exc}", file=sys.stderr)
            return 2
        return print_report(file, settings, as_json=args.json)
    if args.cmd == "completeness":
        return print_completeness(args, settings)
    if args.cmd == "schedule" or every is not None:
        exec_periodic(args, config.path)
    configure_logging(args.log_level)
    configure_alerts(alert_settings)
    try:
        try:
            runner.run_once(
                settings, paths=paths, since_s=since_s, force=args.force, stop=_stop_on_signals()
            )
        except LockBusyError as exc:
            print(f"qa: another QA run is going on ({exc})", file=sys.stderr)
            return 1
        return 0
    finally:
        flush_alerts()


def _stop_on_signals() -> threading.Event:
    """Set by SIGTERM/SIGINT; the run stops between files. Nothing ever waits on the event,
    so setting it from the handler cannot block on its lock."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return stop


def exec_periodic(args: argparse.Namespace, config: Path) -> NoReturn:
    """``schedule`` / ``run --every``: become ``python -m ops.periodic qa`` (qa never imports
    ops; the loop runs ``qa run`` as a program)."""
    argv = [sys.executable, "-m", "ops.periodic", "qa", "--config", str(config)]
    argv += ["--log-level", args.log_level]
    if args.data_dir is not None:
        argv += ["--data-dir", args.data_dir]
    if args.every is not None:
        argv += ["--every", repr(args.every)]
    job_args = [a for p in getattr(args, "path", []) for a in ("--path", p)]
    if getattr(args, "since", None):
        job_args += ["--since", args.since]
    if job_args:
        argv += ["--", *job_args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)


def print_completeness(args: argparse.Namespace, settings: QASettings) -> int:
    """``completeness``: the hours that started in the last ``--since``, or one ``--day``."""
    now = time.time()
    closed = now // 3600 * 3600  # hours before the current one are closed (--since counts them)
    if args.day is not None:
        try:
            start = datetime.fromisoformat(args.day).replace(tzinfo=UTC).timestamp()
        except ValueError:
            print(f"qa: --day {args.day!r} is not a day", file=sys.stderr)
            return 2
        from_s, to_s = start, min(start + 86400.0, now)
    else:
        from_s, to_s = closed - parse_duration(args.since), now
    days = completeness.days_between(from_s, max(to_s, from_s + 1))
    records = completeness.iter_records(settings.data_dir, days)
    tol = settings.thresholds.hour_tolerance_s
    rows = completeness.hours(records, from_s=from_s, to_s=to_s, now_s=now, tolerance_s=tol)
    if args.json:
        body = {"from_s": from_s, "to_s": to_s, "hours": completeness.as_json(rows)}
        sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif args.day is not None:
        sys.stdout.write(completeness.render_day(args.day, rows, now))
    else:
        sys.stdout.write(completeness.render_table(rows))
    return 0


def print_report(path: Path, settings: QASettings, *, as_json: bool = False) -> int:
    if path.name.endswith(layout.REPORT_SUFFIX):
        report_file = path
    elif path.name.endswith(layout.PARSED_SUFFIX):
        report_file = layout.report_path(path)
    else:
        print(
            f"qa: {str(path)!r} is neither a .csv.gz data file nor a .qa.json report",
            file=sys.stderr,
        )
        return 2
    report: dict[str, Any]
    if report_file.is_file():
        report = orjson.loads(report_file.read_bytes())
    elif path.is_file() and path.name.endswith(layout.PARSED_SUFFIX):
        report = runner.check_file(path, settings.thresholds, host_id=settings.host_id)
    else:
        print(f"qa: no such file: {str(path)!r}", file=sys.stderr)
        return 2
    if as_json:
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        sys.stdout.write(format_report(report))
    return 0


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and (abs(v) >= 1e9 or v.is_integer()):
        return f"{v:.0f}"
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def format_report(r: dict[str, Any]) -> str:
    """A report as text for a terminal."""
    lines = [
        f"File     {r['file']}",
        f"Stream   {r.get('exchange')} {r.get('symbol')} {r.get('data_type')}"
        f"   host {r.get('host')}   raw {r.get('raw_file') or '-'}",
        f"Status   {r['status'].upper()}   rows {r.get('rows')}   checked {r.get('checked_at')}"
        f" in {r.get('duration_s')} s",
        f"Summary  {r.get('summary')}",
        "",
        "Checks",
    ]
    for f in r.get("findings", []):
        lines.append(f"  {f['severity']:<5} {f['check']:<15} {f['message']}")
    stats = r.get("stats") or {}
    if stats:
        names = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")
        lines += ["", "Statistics", "  " + f"{'column':<15}" + "".join(f"{n:>20}" for n in names)]
        for col, st in stats.items():
            lines.append("  " + f"{col:<15}" + "".join(f"{_num(st.get(n)):>20}" for n in names))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
