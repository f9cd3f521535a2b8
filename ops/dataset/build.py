"""Building the dataset: which hours, from which copies, and writing what they merge to.

One build of one stream's hour: read every host's copies (:mod:`ops.dataset.frames`, the QA
verdict, the raw markers for books), merge them (:mod:`trades`, :mod:`books`, :mod:`l3`),
fill what every host missed from REST (:mod:`backfill`), write the hour's Parquet object and
its build record (the fingerprint of its inputs and its completeness row), then the date's
completeness table. A copy that cannot be read is counted and left out; an hour whose build
crashes is counted and the run goes on.

``run`` builds each hour that is ready (every host that delivers the stream has its parsed
files and QA reports of the hour there, trades also those of the next hour, whose first file
holds the trades received just after the hour; or the deadline has passed) and whose inputs
differ from its build record: a late copy or a rebuilt raw hour changes the fingerprint, so
that hour (and only that) is built again.
"""

from __future__ import annotations

import bisect
import hashlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import orjson
import polars as pl
import structlog

from collector.common.layout import HOUR_MS
from collector.exchanges import ADAPTERS
from collector.exchanges.base import StreamSpec
from collector.model import COLUMNS, Trade
from ops.dataset import books, l3, trades
from ops.dataset.backfill import Cache, Fetcher
from ops.dataset.copies import UNCHECKED, Copy, rank_of, verdict_of
from ops.dataset.frames import UnreadableError, read_parsed, schema
from ops.dataset.inventory import HostFile, Inventory, Stream, day_of, report_refused, scan_host
from ops.dataset.markers import read_markers
from ops.dataset.output import (
    PARQUET,
    Completeness,
    backfill_key,
    completeness_frame,
    completeness_key,
    conform,
    hour_key,
    parquet_bytes,
    state_key,
)
from ops.dataset.settings import DatasetSettings
from ops.dataset.store import Store

log = structlog.get_logger()

FORMAT_VERSION = 1
SETTLE_S = 60.0  # an hour is looked at this long after it ended at the earliest
REST = "rest"


@dataclass
class Summary:
    hours: int = 0  # hours looked at
    built: int = 0
    unchanged: int = 0
    waiting: int = 0
    failed: int = 0
    rows: int = 0
    written: int = 0  # objects written (identical ones are not rewritten)
    rest_requests: int = 0
    refused_keys: int = 0
    unreadable_files: int = 0
    bad_rows: int = 0
    seconds: float = 0.0
    failed_hours: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"dataset: {self.built} hours built, {self.unchanged} unchanged, {self.waiting}"
            f" waiting, {self.failed} failed; {self.rows} rows, {self.written} objects written,"
            f" {self.rest_requests} REST requests, {self.refused_keys} keys refused,"
            f" {self.unreadable_files} unreadable files, {self.bad_rows} bad rows"
            f" in {self.seconds:.1f} s"
        )


def hour_label(hour_ms: int) -> str:
    return datetime.fromtimestamp(hour_ms / 1000, UTC).strftime("%Y-%m-%dT%H:00:00Z")


@dataclass
class Builder:
    """One run: the host stores, the output store, the REST fetcher, the summary."""

    settings: DatasetSettings
    sources: dict[str, Store]
    out: Store
    fetcher: Fetcher
    summary: Summary = field(default_factory=Summary)
    _cache: dict[str, bytes | None] = field(default_factory=dict)

    # --- inventory and planning ---------------------------------------------------------

    def inventory(self, hours: list[int]) -> Inventory:
        """Every host's files of the dates of ``hours`` (and the day before and after, for
        the edge files of trades)."""
        days = sorted({day_of(h + d) for h in hours for d in (-HOUR_MS, 0, HOUR_MS)})
        inv = Inventory(hosts=tuple(sorted(self.sources)))
        for host, store in sorted(self.sources.items()):
            scan_host(host, store, days, inv, None)
        report_refused(inv)
        self.summary.refused_keys += inv.refused
        return inv

    def _delivered(self, inv: Inventory, stream: Stream, host: str, hour_ms: int) -> bool:
        files = [f for f in inv.hour(stream, hour_ms) if f.host == host]
        if not files:
            return False
        return not self.settings.require_qa or all(f.report is not None for f in files)

    def ready(self, inv: Inventory, stream: Stream, hour_ms: int, now_s: float) -> bool:
        end_s = (hour_ms + HOUR_MS) / 1000
        if now_s >= end_s + self.settings.deadline_s:
            return True
        hours = [hour_ms, hour_ms + HOUR_MS] if stream.data_type == "trade" else [hour_ms]
        if now_s < hours[-1] / 1000 + 3600 + SETTLE_S:
            return False
        return all(
            self._delivered(inv, stream, h, x)
            for h in inv.stream_hosts.get(stream, ())
            for x in hours
        )

    def inputs(self, inv: Inventory, stream: Stream, hour_ms: int) -> list[HostFile]:
        """The files one hour's build reads: the hour's, and for trades each host's last file
        of the hour before and first file of the hour after."""
        files = list(inv.hour(stream, hour_ms))
        if stream.data_type == "trade":
            for host in sorted(inv.stream_hosts.get(stream, ())):
                before = [f for f in inv.hour(stream, hour_ms - HOUR_MS) if f.host == host]
                after = [f for f in inv.hour(stream, hour_ms + HOUR_MS) if f.host == host]
                files += before[-1:] + after[:1]
        return sorted(files, key=lambda f: (f.host, f.key))

    def fingerprint(self, files: list[HostFile]) -> str:
        s = self.settings
        body = {
            "v": FORMAT_VERSION,
            "require_qa": s.require_qa,
            "backfill": s.backfill,
            "files": [
                [
                    f.host,
                    f.key,
                    f.tag,
                    f.report.tag if f.report else None,
                    f.raw.tag if f.raw else None,
                ]
                for f in files
            ],
        }
        return hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()

    def previous(self, stream: Stream, hour_ms: int) -> str | None:
        try:
            state = orjson.loads(self.out.get(state_key(stream, hour_ms)))
        except FileNotFoundError:
            return None
        except orjson.JSONDecodeError:
            return None
        fp = state.get("fingerprint")
        return fp if isinstance(fp, str) else None

    # --- reading copies -----------------------------------------------------------------

    def _get(self, host: str, key: str) -> bytes | None:
        cache_key = f"{host}\0{key}"
        if cache_key not in self._cache:
            try:
                self._cache[cache_key] = self.sources[host].get(key)
            except FileNotFoundError:
                self._cache[cache_key] = None
        return self._cache[cache_key]

    def copies(self, stream: Stream, files: list[HostFile], row: Completeness) -> list[Copy]:
        out = []
        for f in files:
            data = self._get(f.host, f.key)
            if data is None:
                row.unreadable_files += 1
                continue
            try:
                parsed = read_parsed(data, stream.data_type, stream.symbol)
            except UnreadableError as exc:
                log.warning("dataset.unreadable", host=f.host, key=f.key, error=str(exc)[:200])
                row.unreadable_files += 1
                continue
            row.bad_rows += parsed.bad_rows
            report = self._get(f.host, f.report.key) if f.report else None
            verdict = verdict_of(report)
            rank = rank_of(verdict, require_qa=self.settings.require_qa)
            markers = None
            if stream.data_type == "book":
                raw = self._get(f.host, f.raw.key) if f.raw else None
                markers = read_markers(raw) if raw is not None else None
                if markers is None:
                    rank = max(rank, 3)  # no markers: not known to be in sync anywhere
            out.append(Copy(f.host, f, verdict, rank, parsed.df, markers))
        return out

    # --- one hour -----------------------------------------------------------------------

    def build_hour(self, inv: Inventory, stream: Stream, hour_ms: int) -> Completeness:
        files = self.inputs(inv, stream, hour_ms)
        fp = self.fingerprint(files)
        row = Completeness(stream.exchange, stream.symbol, stream.data_type, hour_label(hour_ms))
        row.input_files = len(files)
        copies = self.copies(stream, files, row)
        own = [c for c in copies if c.file.hour_ms == hour_ms]
        if stream.data_type == "trade":
            df = self._trades(stream, hour_ms, copies, row) if own else None
        elif stream.data_type == "book":
            df = self._books(hour_ms, own, row) if own else None
        else:
            df = self._l3(stream, own, row) if own else None
        if df is None:
            df = pl.DataFrame(schema={**schema(stream.data_type), "source": pl.String()})
            row.hosts = sorted({f.host for f in files if f.hour_ms == hour_ms})
            row.note = (row.note + "; " if row.note else "") + "no readable copy"
        df = conform(df, stream.data_type)
        row.rows = df.height
        self._put(hour_key(stream, hour_ms), parquet_bytes(df), PARQUET)
        state = {"fingerprint": fp, "completeness": row.as_dict(), "version": FORMAT_VERSION}
        body = orjson.dumps(state, option=orjson.OPT_SORT_KEYS | orjson.OPT_INDENT_2)
        self._put(state_key(stream, hour_ms), body, "application/json")
        self.summary.rows += df.height
        self.summary.bad_rows += row.bad_rows
        self.summary.unreadable_files += row.unreadable_files
        return row

    def _put(self, key: str, data: bytes, content_type: str) -> None:
        if self.out.put(key, data, content_type):
            self.summary.written += 1

    def _books(self, hour_ms: int, copies: list[Copy], row: Completeness) -> pl.DataFrame:
        m = books.merge_books(copies, hour_ms)
        row.hosts = m.hosts
        row.best_host = m.best_host
        row.out_of_sync_s = round(m.uncovered_s, 6)
        row.best_host_out_of_sync_s = round(m.best_uncovered_s, 6)
        row.from_failed_qa = m.from_failed_qa
        row.from_unchecked = m.from_unchecked
        row.filled_from_hosts = (
            m.rows.filter(pl.col("source") != m.best_host).height if m.rows.height else 0
        )
        row.note = f"{m.switches} host switches"
        return m.rows

    def _l3(self, stream: Stream, copies: list[Copy], row: Completeness) -> pl.DataFrame:
        adapter = ADAPTERS[stream.exchange]
        m = l3.merge_l3(copies, sequenced=adapter.L3_ALIGN == "sequence")
        row.hosts = m.hosts
        row.best_host = m.best_host
        row.from_failed_qa = m.from_failed_qa
        row.from_unchecked = m.from_unchecked
        row.filled_from_hosts = max(0, m.rows.height - m.best_rows)
        row.note = m.note
        seq = m.rows.get_column("sequence").drop_nulls()
        if seq.len():
            row.first_id, row.last_id = int(seq.min()), int(seq.max())  # type: ignore[arg-type]
        return m.rows

    def _trades(
        self, stream: Stream, hour_ms: int, copies: list[Copy], row: Completeness
    ) -> pl.DataFrame:
        adapter = ADAPTERS[stream.exchange]
        contiguous = adapter.TRADE_IDS_CONTIGUOUS
        m = trades.merge_trades(copies, hour_ms, contiguous=contiguous)
        row.hosts = m.hosts
        row.best_host = m.best_host
        row.disagreements = m.disagreements
        row.filled_from_hosts = m.union_rows - m.best_rows
        rows = m.rows
        row.from_failed_qa = trades.count_from(rows, trades.FAIL)
        row.from_unchecked = trades.count_from(rows, UNCHECKED)
        columns = list(COLUMNS["trade"])
        if not contiguous:
            row.note = (
                f"{stream.exchange} trade ids are not contiguous per symbol:"
                " missing trades cannot be counted by id"
            )
        if not contiguous or not rows.height:
            out = trades.finish(rows, columns)
            self._id_range(row, out)
            return out
        gaps = list(m.gaps)
        edges = [g for g in (m.leading, m.trailing) if g is not None]
        rest, outside, unanswered, notes = self._backfill(stream, hour_ms, gaps + edges)
        if rest:
            got = pl.DataFrame(
                [(*t, None) for t in rest],
                schema={**schema("trade"), "local_time": pl.Int64()},
                orient="row",
            ).with_columns(pl.lit(REST).alias("source"))
            rows = pl.concat([rows.select([*columns, "source"]), got], how="vertical")
        out = trades.finish(rows, columns)
        row.filled_from_rest = len(rest)
        self._id_range(row, out)
        lo = m.leading[0] if m.leading else row.first_id
        assert lo is not None
        assert row.last_id is not None
        expected = row.last_id - lo + 1 - outside
        row.missing_after = expected - out.height
        row.missing_before = expected - m.best_rows
        row.not_fillable = min(row.missing_after, unanswered)
        row.note = "; ".join(notes)
        return out

    @staticmethod
    def _id_range(row: Completeness, out: pl.DataFrame) -> None:
        if out.height:
            ids = out.get_column("trade_id")
            row.first_id, row.last_id = int(ids.min()), int(ids.max())  # type: ignore[arg-type]

    def _backfill(
        self, stream: Stream, hour_ms: int, gaps: list[tuple[int, int]]
    ) -> tuple[list[Trade], int, int, list[str]]:
        """REST trades of ``gaps`` with trade_time in the hour, the number of gap ids found
        to lie before the hour (they belong to the previous one), the number of gap ids the
        exchange cannot serve, and notes."""
        if not gaps:
            return [], 0, 0, []
        adapter = ADAPTERS[stream.exchange]
        total = sum(b - a + 1 for a, b in gaps)
        if adapter.build_trades_backfill_url is None:
            return [], 0, total, [f"{stream.exchange} REST cannot serve trades by id"]
        if not self.settings.backfill:
            return [], 0, 0, ["backfill off"]
        key = backfill_key(stream, hour_ms)
        try:
            cache = Cache.loads(self.out.get(key), stream.symbol)
        except FileNotFoundError:
            cache = Cache()
        spec = StreamSpec(
            symbol=stream.symbol,
            data_type="trade",
            options=(self.settings.options or {}).get(stream.exchange, {}),
        )
        url = self.settings.rest_url(stream.exchange)
        changed = False
        notes: list[str] = []
        for a, b in gaps:
            if cache.covers(a, b):
                continue
            before = self.fetcher.requests
            got, done = self.fetcher.fetch(adapter, url, spec, a, b)
            self.summary.rest_requests += self.fetcher.requests - before
            if done is not None:
                cache.add(done[0], done[1], got)
                changed = True
            if self.fetcher.exhausted:
                notes.append("REST budget exhausted")
                break
        if changed:
            self._put(key, cache.dumps(), "application/json")
        start, end = hour_ms, hour_ms + HOUR_MS
        found = [t for t in cache.trades.values() if any(a <= t.trade_id <= b for a, b in gaps)]
        inside = sorted((t for t in found if start <= t.trade_time_ms < end), key=_tid)
        outside = sum(1 for t in found if t.trade_time_ms < start)
        ids = sorted(cache.trades)
        answered_missing = 0  # ids REST answered for and has no trade of: not fillable
        for a, b in gaps:
            for c, d in cache.ranges:
                lo, hi = max(a, c), min(b, d)
                if lo <= hi:
                    n = bisect.bisect_right(ids, hi) - bisect.bisect_left(ids, lo)
                    answered_missing += hi - lo + 1 - n
        return inside, outside, answered_missing, sorted(set(notes))

    # --- completeness table -------------------------------------------------------------

    def write_completeness(self, days: Iterable[str]) -> None:
        for day in sorted(set(days)):
            rows = []
            for obj in self.out.objects(f"_state/date={day}/"):
                try:
                    state = orjson.loads(self.out.get(obj.key))
                    rows.append(state["completeness"])
                except (orjson.JSONDecodeError, KeyError, FileNotFoundError):
                    log.warning("dataset.bad_state", key=obj.key)
            self._put(completeness_key(day), parquet_bytes(completeness_frame(rows)), PARQUET)


def _tid(t: Trade) -> int:
    return t.trade_id


def hours_between(start_ms: int, end_ms: int) -> Iterator[int]:
    """Every whole hour starting in ``[start_ms, end_ms)``."""
    h = start_ms // HOUR_MS * HOUR_MS
    while h < end_ms:
        yield h
        h += HOUR_MS


class Progress:
    """A ``dataset.progress`` line every ``every_s`` seconds of a long run."""

    def __init__(self, total: int, every_s: float = 10.0) -> None:
        self.total = total
        self.done = 0
        self._every = every_s
        self._last = time.monotonic()

    def advance(self, summary: Summary) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self._last >= self._every:
            self._last = now
            log.info("dataset.progress", hours=self.done, total=self.total, rows=summary.rows)


def summary_fields(s: Summary) -> dict[str, object]:
    d = asdict(s)
    if not s.failed_hours:
        del d["failed_hours"]
    return d
