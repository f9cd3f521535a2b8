"""``secmaster`` command line: sync, list, history, track, untrack, tracked, run.

``track``/``untrack`` take one pair or a selection of the listings (``--quote``, ``--base``,
``--status``, ``--all``; see ``secmaster.tracking``) and ``--dry-run``; they change the universe
``[secmaster] universe`` names (the local table, or the fleet's document in S3). ``sync``
polls ``[secmaster] exchanges`` (or ``--exchange``), then auto-tracks new listings that match
``[secmaster] auto_track``.

``run`` (and its old name ``schedule``) is an alias: it checks its arguments, then execs
``python -m ops.periodic secmaster --config PATH [-- --exchange X --user U]``, the fleet's one
periodic loop, which runs ``secmaster sync --apply`` every ``poll_interval_min`` and writes the
state ``ops status`` shows (``--iterations N`` becomes ``--runs N``). ``sync`` stops cleanly on
SIGTERM/SIGINT: a retry wait is cut short, a request or a database write in progress is not.

Exit codes: 0 success (also when a sync found the lock held: it says so and stops, or was
stopped by SIGTERM/SIGINT), 1 a poll, auto-track, the apply command or the universe's store
(the bucket unreachable, its document broken) failed, 2 bad input (unknown exchange, malformed
date, untrackable pair, a selection that matches nothing, bad config) with a one-line message
on stderr and nothing written.

Every argument is checked before anything is opened: a value with a control character (a
newline in a pair, a NUL in ``--user``) is bad input, and ``track``/``untrack`` check the pair
against the exchange's symbol grammar first. ``--config`` is accepted before or after the
subcommand (``secmaster track binance ETHUSDT --data-types trade --config X``); given in both
places it must name the same file. Table output shows a cell with a control character repr'd,
so a hostile value read from the database cannot forge table lines.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime as dt
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn, TextIO

import orjson
import structlog
from sqlalchemy import Engine, select

from collector.common.alerts import (
    Alert,
    build_alert_settings,
    configure_alerts,
    flush_alerts,
    send_alert,
)
from collector.common.errors import ConfigError
from collector.common.locks import LockBusyError
from collector.common.logs import configure_logging
from collector.config import load_config
from collector.exchanges.listing import shown
from secmaster.apply import run_apply_cmd
from secmaster.models import Instrument, open_engine
from secmaster.names import UniverseError, UniverseStoreError, stream_key
from secmaster.poller import SyncResult, os_user, sync, utc_now
from secmaster.scd2 import TRACKED_ATTRIBUTES
from secmaster.settings import SecmasterSettings, build_secmaster_settings
from secmaster.tracking import Change, Selection, auto_track, track, untrack
from secmaster.universe import list_tracked, open_universe

log = structlog.get_logger()

LIST_COLUMNS = ("exchange", "trading_pair", *TRACKED_ATTRIBUTES, "valid_from", "valid_to")
HISTORY_COLUMNS = (
    "exchange",
    "trading_pair",
    "valid_from",
    "valid_to",
    "is_current",
    "is_delisted",
    "status",
    "trading_enabled",
    "base",
    "quote",
    "tick_size",
    "lot_size",
    "min_notional",
    "last_modified_datetime",
    "last_modified_user",
)
TRACKED_COLUMNS = (
    "exchange",
    "trading_pair",
    "data_type",
    "listing",
    "added_datetime",
    "added_user",
)


class BadInput(Exception):
    """Bad command-line input: one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_time(value: str) -> dt.datetime:
    """``2026-01-01``, ``2026-01-01T00:00Z``, ``...+02:00``; naive times are UTC."""
    text = value.strip()
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}([T ][0-9:.,]+(Z|[+-]\d{2}:?\d{2})?)?", text):
        raise BadInput(f"malformed date {value!r} (expected e.g. 2026-01-01T00:00Z)")
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise BadInput(f"malformed date {value!r} (expected e.g. 2026-01-01T00:00Z)") from None
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def _iso(value: dt.datetime | None) -> str:
    return "" if value is None else value.isoformat().replace("+00:00", "Z")


def _cell(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return _iso(value)
    return value


def _table_text(value: Any) -> str:
    """A table cell: a value with a control character is shown repr'd (one line)."""
    text = "" if value is None else str(value)
    return text if text.isprintable() else repr(text)


def write_rows(
    rows: Sequence[dict[str, Any]], columns: Sequence[str], fmt: str, out: TextIO
) -> None:
    """Print rows as an aligned table, CSV (header first) or a JSON array."""
    cells = [{c: _cell(r[c]) for c in columns} for r in rows]
    if fmt == "json":
        out.write(orjson.dumps(cells, option=orjson.OPT_INDENT_2).decode() + "\n")
    elif fmt == "csv":
        w = csv.writer(out, lineterminator="\n")
        w.writerow(columns)
        for r in cells:
            w.writerow(["" if r[c] is None else r[c] for c in columns])
    else:
        text = [[_table_text(r[c]) for c in columns] for r in cells]
        widths = [max([len(c)] + [len(t[i]) for t in text]) for i, c in enumerate(columns)]
        out.write("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
        out.write("\n")
        for t in text:
            out.write("  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)).rstrip())
            out.write("\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="secmaster",
        description="Security master: exchange listings (SCD2), alerts and the tracked universe.",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: the repository's config.toml)",
    )
    p.add_argument("--log-level", default="info", help="debug|info|warning|error")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add_parser(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        sp: argparse.ArgumentParser = sub.add_parser(name, **kwargs)
        # Same meaning as before the subcommand (a separate dest: argparse would otherwise
        # let the subcommand's default overwrite the value given before it).
        sp.add_argument(
            "--config", dest="sub_config", type=Path, default=None, help="same as before"
        )
        return sp

    def user_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--user", default=None, help="last_modified_user to record (default: the OS user)"
        )

    def selection_opts(sp: argparse.ArgumentParser, verb: str, status: str) -> None:
        sp.add_argument("--quote", default=None, help="pairs with this quote asset, e.g. USDT")
        sp.add_argument("--base", default=None, help="pairs with this base asset, e.g. BTC")
        sp.add_argument("--status", default=None, help=f"pairs with this {status}")
        sp.add_argument("--all", action="store_true", help=f"{verb} every pair of the exchange")
        sp.add_argument(
            "--dry-run", action="store_true", help="print what would change; change nothing"
        )

    def fmt_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--format", choices=("table", "csv", "json"), default="table")

    sp = add_parser("sync", help="poll the listings and apply the changes (SCD2)")
    sp.add_argument("--exchange", default=None, help="one exchange (default: all)")
    sp.add_argument(
        "--apply",
        action="store_true",
        help="then run [secmaster] apply_cmd if an exchange was polled (the periodic job)",
    )
    user_opt(sp)

    sp = add_parser("list", help="instruments, current or as of a time")
    sp.add_argument("--exchange", default=None)
    sp.add_argument("--quote", default=None, help="quote asset, e.g. USDT")
    sp.add_argument("--status", default=None, help="venue status, e.g. TRADING or online")
    sp.add_argument("--as-of", default=None, help="UTC time, e.g. 2026-01-01T00:00Z")
    fmt_opt(sp)

    sp = add_parser("history", help="every version of one instrument")
    sp.add_argument("exchange")
    sp.add_argument("pair")
    fmt_opt(sp)

    sp = add_parser(
        "track",
        help="add a listed pair, or every current listing matching filters, to the universe",
        description="Track one listed pair, or the current listings matching every filter "
        "given (or --all). Without a pair, a filter or --all is required.",
    )
    sp.add_argument("exchange")
    sp.add_argument("pair", nargs="?", default=None)
    selection_opts(sp, "track", "current status, e.g. TRADING, online, Enabled")
    sp.add_argument("--data-types", required=True, help="comma list, e.g. trade,book")
    user_opt(sp)

    sp = add_parser(
        "untrack",
        help="remove a pair (or some data types), or the tracked pairs matching filters",
        description="Untrack one pair, or the tracked pairs of the exchange matching every "
        "filter given (or --all); --status matches the listing column of `tracked` (a status, "
        "delisted or unknown).",
    )
    sp.add_argument("exchange")
    sp.add_argument("pair", nargs="?", default=None)
    selection_opts(sp, "untrack", "listing state, e.g. TRADING or delisted")
    sp.add_argument("--data-types", default=None, help="comma list (default: all)")
    user_opt(sp)

    sp = add_parser("tracked", help="the tracked universe")
    fmt_opt(sp)

    for name in ("run", "schedule"):
        sp = add_parser(
            name,
            help="alias of `python -m ops.periodic secmaster`: sync --apply every "
            "poll_interval_min minutes until SIGTERM",
            description="An alias of the fleet's one periodic loop: checks its arguments, then "
            "execs `python -m ops.periodic secmaster --config PATH [-- --exchange X --user U]`, "
            "which runs `secmaster sync --apply` every [secmaster] poll_interval_min minutes "
            "(SIGUSR1: now), never two at once, and writes the state `ops status` shows; "
            "SIGTERM stops it (exit 0).",
        )
        sp.add_argument("--exchange", default=None, help="one exchange (default: all)")
        sp.add_argument("--iterations", type=int, default=None, help=argparse.SUPPRESS)
        user_opt(sp)
    return p


def _exchanges(settings: SecmasterSettings, exchange: str | None) -> list[str]:
    if exchange is None:
        return list(settings.exchanges)
    return [settings.check_exchange(exchange)]


def _data_types(value: str) -> list[str]:
    return [d.strip() for d in value.split(",") if d.strip()]


def _hook(settings: SecmasterSettings, reason: str) -> Callable[[], None] | None:
    if not settings.apply_cmd:
        return None

    def hook() -> None:
        if not run_apply_cmd(settings.apply_argv(), reason=reason):
            raise _HookFailed

    return hook


class _HookFailed(Exception):
    pass


class StopRequested(Exception):
    """Raised out of a retry wait when SIGTERM or SIGINT asks a sync to stop."""


@contextlib.contextmanager
def _stoppable_sleep() -> Iterator[Callable[[float], None]]:
    """A ``sleep`` for the poller's retry waits that SIGTERM/SIGINT cut short (StopRequested).

    The handler raises only out of that sleep, and only once: a signal during a request or a
    database write waits for the next retry wait (or the end), so no transaction is cut.
    """
    stopped = sleeping = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopped
        first, stopped = not stopped, True
        if sleeping and first:
            raise StopRequested

    def sleep(seconds: float) -> None:
        nonlocal sleeping
        sleeping = True
        try:
            if stopped:
                raise StopRequested
            time.sleep(seconds)
        finally:
            sleeping = False

    if threading.current_thread() is not threading.main_thread():
        yield time.sleep  # signal handlers can only be set in the main thread
        return
    stop_signals = (signal.SIGTERM, signal.SIGINT)
    previous = [signal.signal(sig, on_signal) for sig in stop_signals]
    try:
        yield sleep
    finally:
        for sig, handler in zip(stop_signals, previous, strict=True):
            signal.signal(sig, handler)


def cmd_sync(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    exchanges = _exchanges(settings, args.exchange)
    try:
        with _stoppable_sleep() as sleep:
            results = sync(settings, exchanges, args.user or os_user(), sleep=sleep)
    except StopRequested:
        log.info("secmaster.sync.stopped", exchanges=exchanges)
        return 0
    except LockBusyError as exc:
        log.warning("secmaster.sync.locked", lock=str(exc.path), holder=exc.holder)
        print(
            f"secmaster: another secmaster sync is running (lock {exc.path} held by pid "
            f"{exc.holder}); nothing done",
            file=sys.stderr,
        )
        return 0
    for r in results:
        print(r.summary(), file=out)
    ok = all(r.ok for r in results)
    if settings.auto_track:
        ok = _auto_track(settings, results, args.user or os_user(), out) and ok
    if args.apply and any(r.ok for r in results):
        ok = run_apply_cmd(settings.apply_argv(), reason="scheduled sync") and ok
    return 0 if ok else 1


def _auto_track(
    settings: SecmasterSettings, results: Sequence[SyncResult], user: str, out: TextIO
) -> bool:
    """Auto-track after a sync; False (logged, alerted) when the universe could not be
    changed."""
    engine = open_engine(settings.database_url)
    try:
        added = auto_track(
            open_universe(settings, engine), settings.auto_track, results, user=user, now=utc_now()
        )
    except UniverseStoreError as exc:
        log.error("secmaster.auto_track.failed", error=str(exc))
        send_alert(
            Alert(
                source="secmaster",
                severity="error",
                title="auto-track failed: the universe could not be changed",
                key="secmaster:auto-track:failed",
                fields={"error": str(exc)},
            )
        )
        print(f"secmaster: auto-track failed: {exc}", file=sys.stderr)
        return False
    finally:
        engine.dispose()
    if added:
        print(f"auto-tracked {len(added)} stream(s): {', '.join(map(stream_key, added))}", file=out)
    return True


def _instrument_dicts(engine: Engine, stmt: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(stmt)]


def cmd_list(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    if args.exchange is not None:
        settings.check_exchange(args.exchange)
    as_of = parse_time(args.as_of) if args.as_of is not None else None
    t = Instrument.__table__  # type: ignore[attr-defined]
    stmt = select(*(t.c[c] for c in LIST_COLUMNS))
    if as_of is None:
        stmt = stmt.where(t.c.is_current.is_(True))
    else:
        stmt = stmt.where(
            t.c.valid_from <= as_of, (t.c.valid_to.is_(None)) | (t.c.valid_to > as_of)
        )
    if args.exchange is not None:
        stmt = stmt.where(t.c.exchange == args.exchange)
    if args.quote is not None:
        stmt = stmt.where(t.c.quote == args.quote)
    if args.status is not None:
        stmt = stmt.where(t.c.status == args.status)
    stmt = stmt.order_by(t.c.exchange, t.c.trading_pair)
    engine = open_engine(settings.database_url)
    try:
        rows = _instrument_dicts(engine, stmt)
    finally:
        engine.dispose()
    write_rows(rows, LIST_COLUMNS, args.format, out)
    return 0


def cmd_history(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    settings.check_exchange(args.exchange)
    t = Instrument.__table__  # type: ignore[attr-defined]
    stmt = (
        select(*(t.c[c] for c in HISTORY_COLUMNS))
        .where(t.c.exchange == args.exchange, t.c.trading_pair == args.pair)
        .order_by(t.c.valid_from, t.c.id)
    )
    engine = open_engine(settings.database_url)
    try:
        rows = _instrument_dicts(engine, stmt)
    finally:
        engine.dispose()
    if not rows:
        raise BadInput(f"no history for {args.exchange} {args.pair!r}")
    write_rows(rows, HISTORY_COLUMNS, args.format, out)
    return 0


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        exchange=args.exchange,
        pair=args.pair,
        quote=args.quote,
        base=args.base,
        status=args.status,
        all=args.all,
    )


def _report(verb: str, sel: Selection, change: Change, out: TextIO) -> None:
    """What a track/untrack did: one line for a pair (as always), a summary line and one line
    per stream for a selection; skipped pairs on stderr."""
    for reason in change.skipped[:20]:
        print(f"secmaster: skipped (outside the grammar): {reason}", file=sys.stderr)
    if len(change.skipped) > 20:
        print(f"secmaster: ... and {len(change.skipped) - 20} more skipped", file=sys.stderr)
    done = {"track": "tracking", "untrack": "untracked"}[verb]
    names = [stream_key(s) for s in change.streams]
    if change.dry_run:
        already = f" ({len(change.unchanged)} already tracked)" if change.unchanged else ""
        print(
            f"dry run: would {verb} {len(names)} stream(s) of {change.pairs} pair(s) "
            f"({sel.describe()}){already}; nothing changed",
            file=out,
        )
        for name in names:
            print(name, file=out)
    elif sel.pair is not None:
        if names:
            print(f"{done} {', '.join(names)}", file=out)
        else:
            print(f"already tracked: {sel.exchange} {sel.pair}", file=out)
    else:
        already = f" ({len(change.unchanged)} already tracked)" if change.unchanged else ""
        print(
            f"{done} {len(names)} stream(s) of {change.pairs} pair(s) ({sel.describe()}){already}",
            file=out,
        )
        for name in names:
            print(name, file=out)


def _change(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO, verb: str) -> int:
    settings.check_exchange(args.exchange)
    sel = _selection(args)
    sel.check(verb)
    engine = open_engine(settings.database_url)
    try:
        universe = open_universe(settings, engine)
        common: dict[str, Any] = {
            "user": args.user or os_user(),
            "now": utc_now(),
            "dry_run": args.dry_run,
            "on_change": _hook(settings, verb),
        }
        if verb == "track":
            change = track(universe, engine, sel, _data_types(args.data_types), **common)
        else:
            dts = _data_types(args.data_types) if args.data_types is not None else None
            change = untrack(universe, engine, sel, dts, **common)
    except _HookFailed:
        print(f"secmaster: {verb}ed, but the apply command failed (see the log)", file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    _report(verb, sel, change, out)
    return 0


def cmd_track(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    return _change(settings, args, out, "track")


def cmd_untrack(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    return _change(settings, args, out, "untrack")


def cmd_tracked(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    engine = open_engine(settings.database_url)
    try:
        streams = list_tracked(open_universe(settings, engine), engine, utc_now(), os_user())
    finally:
        engine.dispose()
    rows = [{c: getattr(s, c) for c in TRACKED_COLUMNS} for s in streams]
    write_rows(rows, TRACKED_COLUMNS, args.format, out)
    return 0


def cmd_run(settings: SecmasterSettings, args: argparse.Namespace, out: TextIO) -> int:
    """``run``/``schedule``: exec the one periodic loop (arguments are checked here first)."""
    _exchanges(settings, args.exchange)
    argv = [sys.executable, "-m", "ops.periodic", "secmaster", "--log-level", args.log_level]
    if settings.config_path is not None:
        argv += ["--config", str(settings.config_path)]
    if args.iterations is not None:
        argv += ["--runs", str(args.iterations)]
    job_args = ["--exchange", args.exchange] if args.exchange is not None else []
    job_args += ["--user", args.user] if args.user is not None else []
    if job_args:
        argv += ["--", *job_args]
    log.debug("secmaster.run.exec", argv=argv)
    flush_alerts()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)  # a module run as a program: secmaster never imports ops


COMMANDS: dict[str, Callable[[SecmasterSettings, argparse.Namespace, TextIO], int]] = {
    "sync": cmd_sync,
    "list": cmd_list,
    "history": cmd_history,
    "track": cmd_track,
    "untrack": cmd_untrack,
    "tracked": cmd_tracked,
    "run": cmd_run,
    "schedule": cmd_run,
}


def config_path(args: argparse.Namespace) -> Path | None:
    """``--config`` from before or after the subcommand; both given must name one file."""
    top: Path | None = args.config
    after: Path | None = getattr(args, "sub_config", None)
    if top is not None and after is not None and top.resolve() != after.resolve():
        raise BadInput(f"--config given twice with different files: {str(top)!r}, {str(after)!r}")
    return after if after is not None else top


def check_arguments(args: argparse.Namespace) -> None:
    """Refuse any argument with a control character (newline, NUL, ESC...), naming it."""
    for dest, value in sorted(vars(args).items()):
        if isinstance(value, str | Path) and not str(value).isprintable():
            name = dest if dest in ("exchange", "pair") else "--" + dest.replace("_", "-")
            name = "--config" if dest == "sub_config" else name
            raise BadInput(f"{name} {shown(str(value))} contains a control character")


def main(argv: Sequence[str] | None = None) -> int:
    """The program: configure logging (JSON on stderr unless a TTY), run one command."""
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level)
    return run(args)


def run(args: argparse.Namespace | Sequence[str], out: TextIO | None = None) -> int:
    """Run one command with logging as already configured; returns the exit code."""
    if not isinstance(args, argparse.Namespace):
        args = build_parser().parse_args(args)
    stdout = out if out is not None else sys.stdout
    try:
        check_arguments(args)
        config = load_config(config_path(args))
        settings = build_secmaster_settings(config)
        configure_alerts(build_alert_settings(config, data_dir=settings.data_dir))
        return COMMANDS[args.command](settings, args, stdout)
    except (BadInput, ConfigError, UniverseError) as exc:
        print(f"secmaster: error: {exc}", file=sys.stderr)
        return 2
    except UniverseStoreError as exc:
        log.error("secmaster.universe.unavailable", error=str(exc))
        print(f"secmaster: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        flush_alerts()
