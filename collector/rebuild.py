"""``python -m collector rebuild``: the parsed files again, from the raw files, exactly.

    RAW files / directories ──▶ one stream ──▶ its runs (rawfiles.split_runs)
        each run, from its first file ──▶ Processor.replay (the live processor, file-mode
        effects: no socket, no clock, no sleep) ──▶ rows by receive hour ──▶ parsed files

The parsed file of a raw file is a pure function of the raw lines of its run up to the end
of that file (and the next file of the run, which may hold the ``trade_accept`` that decided
a trade held at the hour's end): the processor that wrote it live is fed the same frames and
the markers that record its live decisions, with the run's settings from its first line
(collector/runinfo.py). Receive times are the envelope's ``ts``, written with ``repr`` (the
shortest text that reads back as the same double), so ``local_time`` comes out the same.

Each raw file gives the parsed file of the same stem (``layout.parsed_twin``) under the
output data dir, written as ``.part`` and renamed into place; an hour that yields no row
gives no file, as live. Bad input (not a raw file, several streams, an unknown exchange, an
output inside the input's data dir, an output that is not writable, a file whose first line
is not a raw event, a file whose run's first file is gone) is one line and exit 2, with
nothing written. Hostile lines inside a raw file (not JSON, not an event, an unknown kind, a
field of the wrong type, longer than ``max_line``) are skipped and counted in the summary;
they never stop the rebuild and never make a row.

``--in-place`` (collector/rebuild_inplace.py) replaces the parsed files of the data dir that
holds the raw files, keeping the previous versions until S3 sync has delivered the new ones.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import zlib
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

from collector import handlers, rawfiles, runinfo
from collector.common import layout
from collector.common.config import check_path_value, ensure_writable_dir
from collector.common.errors import ConfigError, FeedError
from collector.common.logs import configure_logging
from collector.config import load_config
from collector.effects import Effects
from collector.exchanges import ADAPTERS, EXCHANGES
from collector.model import COLUMNS
from collector.processor import FRAME_KINDS, Processor
from collector.rawfiles import RawFile
from collector.settings import CollectorSettings, build_collector_settings
from collector.status import Stats
from collector.writer import PARSED_COMPRESS_LEVEL

# What a raw line may be: frames and the markers that record a live decision are replayed;
# the processor's own markers are outputs (it writes them again where they recur).
REPLAYED = FRAME_KINDS | {runinfo.START, "resume", "trade_accept"}
OUTPUTS = frozenset({"gap", "resync", "trade_stray", "trade_reset"})
SPILL_LINES = 8192  # rows kept in memory per file before they are compressed


class RebuildError(ConfigError):
    """Input the rebuild refuses (one line, exit 2, nothing written)."""


# --- the input: one stream's raw files --------------------------------------------------------


@dataclass(frozen=True)
class Stream:
    """A stream of a data dir: ``{root}/{exchange}/{symbol}/{data_type}``."""

    root: Path
    exchange: str
    symbol: str
    data_type: str

    @property
    def dir(self) -> Path:
        return layout.stream_dir(self.root, self.exchange, self.symbol, self.data_type)

    @property
    def label(self) -> str:
        return f"{self.exchange}/{self.symbol}/{self.data_type}"

    def parsed_rel(self, raw: Path) -> Path:
        """The parsed twin of a raw file of this stream, relative to the data dir."""
        return layout.parsed_twin(raw).relative_to(self.root)


def _stream_at(stream_dir: Path, what: Path) -> Stream:
    """The stream whose directory is ``stream_dir`` (checked against the registry)."""
    exchange, symbol = stream_dir.parent.parent.name, stream_dir.parent.name
    data_type = stream_dir.name
    adapter = ADAPTERS.get(exchange)
    if adapter is None:
        raise RebuildError(
            f"{what}: unknown exchange {exchange!r} (choose from {', '.join(EXCHANGES)})"
        )
    if data_type not in adapter.DATA_TYPES:
        raise RebuildError(f"{what}: {exchange} has no data type {data_type!r}")
    try:
        layout.check_path_safe(symbol)
    except ConfigError as exc:
        raise RebuildError(f"{what}: {exc}") from None
    if not adapter.SYMBOL_PATTERN.fullmatch(symbol):
        raise RebuildError(f"{what}: symbol {symbol!r} does not fit {exchange}'s symbol syntax")
    return Stream(stream_dir.parent.parent.parent, exchange, symbol, data_type)


def _input(arg: Path) -> tuple[Stream, list[Path]]:
    """One RAW argument: a raw file, or a directory of one stream's raw files."""
    path = Path(os.path.abspath(arg))
    if path.is_dir():
        if path.name == layout.RAW:
            stream_dir, days = path.parent, [d for d in path.iterdir() if d.is_dir()]
        elif layout.DATE_DIR.fullmatch(path.name) and path.parent.name == layout.RAW:
            stream_dir, days = path.parent.parent, [path]
        elif (path / layout.RAW).is_dir():
            stream_dir, days = path, [d for d in (path / layout.RAW).iterdir() if d.is_dir()]
        else:
            raise RebuildError(f"{arg}: not a stream's raw directory (.../{{data_type}}/raw/...)")
        files = sorted(
            p for d in days for p in d.iterdir() if rawfiles.raw_file(p) is not None and p.is_file()
        )
        if not files:
            raise RebuildError(f"{arg}: no raw files in it")
        return _stream_at(stream_dir, arg), files
    if not path.is_file():
        raise RebuildError(f"{arg}: no such file or directory")
    f = rawfiles.raw_file(path)
    day = path.parent
    if f is None or day.parent.name != layout.RAW or not layout.DATE_DIR.fullmatch(day.name):
        raise RebuildError(
            f"{arg}: not a raw file ({{data_dir}}/{{exchange}}/{{symbol}}/{{data_type}}"
            f"/raw/{{YYYY-MM-DD}}/{{stem}}{layout.RAW_SUFFIX}[{layout.PART}])"
        )
    stream = _stream_at(day.parent.parent, arg)
    info = layout.parse_file_name(path.name.removesuffix(layout.PART))
    if (info.exchange, info.symbol, info.data_type) != (
        stream.exchange,
        stream.symbol,
        stream.data_type,
    ):
        raise RebuildError(f"{arg}: its name is not of the stream of its directory")
    return stream, [path]


def resolve_inputs(args: Sequence[Path]) -> tuple[Stream, list[Path]]:
    """The one stream of the RAW arguments and its raw files (sorted, deduplicated)."""
    stream: Stream | None = None
    paths: set[Path] = set()
    for arg in args:
        s, found = _input(arg)
        if stream is not None and (
            os.path.realpath(s.root),
            s.label,
        ) != (os.path.realpath(stream.root), stream.label):
            raise RebuildError(
                f"raw files of different streams: {stream.dir} and {s.dir} "
                "(one call rebuilds one stream)"
            )
        stream = stream or s
        paths.update(found)
    if stream is None:
        raise RebuildError("no raw file given")
    return stream, sorted(paths)


def inside(path: Path, root: Path) -> bool:
    """Is ``path`` ``root`` or below it (symlinks resolved)?"""
    p, r = os.path.realpath(path), os.path.realpath(root)
    return p == r or p.startswith(r.rstrip(os.sep) + os.sep)


# --- the rows of a run, cut by hour ------------------------------------------------------------


class _Discard:
    """The raw sink of a rebuild: the raw file is the input, never written again."""

    def add(self, line: str, ts_s: float) -> None:
        pass


class ParsedOut:
    """One rebuilt parsed file: written as ``work`` (header first), renamed to ``final``."""

    def __init__(self, final: Path, work: Path, header: str) -> None:
        self.final = final
        self.work = work
        self.lines: list[str] = []
        self.rows = 0
        self._z = zlib.compressobj(PARSED_COMPRESS_LEVEL, zlib.DEFLATED, 31)
        work.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(work, "wb")  # noqa: SIM115 - kept open while its run is replayed
        self._fh.write(self._z.compress(header.encode()))

    def spill(self) -> None:
        if self.lines:
            self.rows += len(self.lines)
            self._fh.write(self._z.compress("".join(self.lines).encode()))
            self.lines.clear()

    def finish(self) -> int:
        """Complete the file (fsynced, still at ``work``); returns its row count."""
        self.spill()
        self._fh.write(self._z.flush())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        return self.rows

    def abandon(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.work.unlink(missing_ok=True)


class HourRows:
    """The rows sink of a rebuild: each row goes to the file of the hour it was received in
    (as the live writer cuts), or is dropped when that file was not asked for."""

    def __init__(self) -> None:
        self.targets: dict[int, list[str]] = {}
        self.orphans: list[str] = []  # rows of an hour without a raw file in the run
        self._scratch: list[str] = []
        self._lo, self._hi = 0.0, -1.0
        self._lines: list[str] = self._scratch

    def aim(self, hour: int, lines: list[str] | None) -> None:
        """Rows of ``hour`` go to ``lines`` from now on (None: dropped)."""
        self.targets[hour] = self._scratch if lines is None else lines
        self._lo, self._hi = 0.0, -1.0

    def add(self, line: str, ts_s: float) -> None:
        if self._lo <= ts_s < self._hi:  # the hot path
            self._lines.append(line)
            return
        hour = int(ts_s // 3600)
        self._lo, self._hi = hour * 3600.0, hour * 3600.0 + 3600.0
        self._lines = self.targets.get(hour, self.orphans)
        self._lines.append(line)

    def drop_scratch(self) -> None:
        self._scratch.clear()


# --- one run -------------------------------------------------------------------------------------


@dataclass
class Result:
    """What a rebuild did; ``skipped`` counts raw lines by reason."""

    written: list[tuple[Path, int]] = field(default_factory=list)  # (final path, rows)
    empty: list[Path] = field(default_factory=list)  # raw files whose hour gave no row
    skipped: Counter[str] = field(default_factory=Counter)
    parse_errors: Counter[str] = field(default_factory=Counter)
    lines: int = 0
    frames: int = 0
    context_files: int = 0  # raw files read only for the state they leave


def replay_run(
    stream: Stream,
    settings: CollectorSettings,
    files: Sequence[RawFile],
    outputs: Mapping[Path, tuple[Path, Path]],
    result: Result,
    max_line: int,
) -> list[ParsedOut]:
    """Feed one run's files (from its first) to a new processor. ``outputs``: raw path →
    (final, work) of the parsed files to write. Returns them finished (still at ``work``);
    an hour without rows is not among them (its work file is removed)."""
    adapter = ADAPTERS[stream.exchange]
    rows = HourRows()
    effects = Effects(_Discard(), rows)
    stats = Stats(stream.exchange, stream.symbol, stream.data_type)
    handler = handlers.for_stream(
        adapter, stream.symbol, stream.data_type, effects, stats, book_depth=settings.book_depth
    )
    processor = Processor(adapter, settings.stream_spec(), handler, effects, stats)
    header = ",".join(COLUMNS[stream.data_type]) + "\n"
    open_outs: dict[int, ParsedOut] = {}
    done: list[ParsedOut] = []
    try:
        for i, f in enumerate(files):
            for hour in [h for h in open_outs if h < f.hour - 1]:  # no row comes back to them
                done += _finish(open_outs.pop(hour), result)
            target = outputs.get(f.path)
            out = None if target is None else ParsedOut(*target, header)
            if out is not None:
                open_outs[f.hour] = out
            else:
                result.context_files += 1
            rows.aim(f.hour, None if out is None else out.lines)
            if not _feed(processor, f, open_outs, rows, result, max_line, first=i == 0):
                break  # the run ended there (a fatal error frame): nothing after it counts
        for hour in sorted(open_outs):
            done += _finish(open_outs.pop(hour), result)
    finally:
        for out in open_outs.values():
            out.abandon()
    result.skipped["orphan_rows"] += len(rows.orphans)
    result.parse_errors.update(stats.parse_errors_by_reason)
    result.frames += stats.frames
    return done


def _finish(out: ParsedOut, result: Result) -> list[ParsedOut]:
    if out.finish():
        return [out]
    out.abandon()
    result.empty.append(out.final)
    return []


def _feed(
    processor: Processor,
    f: RawFile,
    outs: Mapping[int, ParsedOut],
    rows: HourRows,
    result: Result,
    max_line: int,
    *,
    first: bool,
) -> bool:
    """Every line of one raw file through the processor; False when the run ended in it."""
    skipped = result.skipped
    decode, replay = rawfiles.decode, processor.replay
    n = 0
    for n, line in enumerate(rawfiles.read_lines(f.path, max_line, skipped), 1):
        ev = decode(line, skipped)
        if ev is None:
            continue
        t = ev["t"]
        if t not in REPLAYED:
            skipped["output_marker" if t in OUTPUTS else "unknown_kind"] += 1
            continue
        if (t == runinfo.START or t == "resume") and not (first and n == 1):
            skipped["misplaced_" + t] += 1  # only a run's first line starts it
            continue
        try:
            replay(ev)
        except ValueError:
            skipped["bad_event"] += 1
        except FeedError:
            skipped["fatal_error_frame"] += 1  # live, the process stopped here
            result.lines += n
            return False
        if n % 4096 == 0:
            for out in outs.values():
                out.spill()
            rows.drop_scratch()
    result.lines += n
    return True


# --- the whole rebuild -------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Which runs to replay, from which file, and which raw files get a parsed file."""

    runs: list[tuple[CollectorSettings, list[RawFile]]]
    wanted: list[RawFile]


def plan(stream: Stream, wanted: Iterable[Path], base: CollectorSettings, max_line: int) -> Plan:
    """Find the runs of the wanted files (each from its first file, up to the file after the
    last wanted one); RebuildError for a file that is not raw or whose run start is gone."""
    files = rawfiles.stream_files(stream.dir / layout.RAW)
    want = set(wanted)
    known = {f.path for f in files}
    firsts = {f.path: rawfiles.first_event(f.path, max_line) for f in files}
    for p in sorted(want):
        if p not in known:
            raise RebuildError(f"{p}: not a raw file of {stream.label}")
        if firsts[p] is None:
            raise RebuildError(f"{p}: not a raw file (its first line is not a raw event)")
    runs: list[tuple[CollectorSettings, list[RawFile]]] = []
    for i, run in enumerate(rawfiles.split_runs(files, firsts)):
        hits = [j for j, f in enumerate(run) if f.path in want]
        if not hits:
            continue
        first = firsts[run[0].path]
        if i == 0 and not rawfiles.opens_run(first, legacy=True):
            raise RebuildError(
                f"{run[hits[0]].path}: the first file of its run is not on disk "
                f"(its run's state cannot be rebuilt from {run[0].path.name})"
            )
        runs.append((_settings_of(base, first, run[0].path), run[: hits[-1] + 2]))
    return Plan(runs, [f for f in files if f.path in want])


def _settings_of(
    base: CollectorSettings, first: Mapping[str, object] | None, path: Path
) -> CollectorSettings:
    facts = None if first is None else first.get(runinfo.RUN_FIELD)
    if facts is None:
        return base  # a run recorded before its settings were: the config file's
    try:
        return runinfo.with_facts(base, facts, f"{path} (first line)")
    except ConfigError as exc:
        raise RebuildError(str(exc)) from None


def execute(
    stream: Stream, p: Plan, target: Mapping[Path, tuple[Path, Path]], max_line: int
) -> tuple[Result, list[ParsedOut]]:
    """Replay the planned runs; ``target``: raw path → (final, work) of its parsed file.
    The outputs are returned finished at their work paths, for the caller to move."""
    result = Result()
    outs: list[ParsedOut] = []
    try:
        for settings, files in p.runs:
            outs += replay_run(stream, settings, files, target, result, max_line)
    except BaseException:
        for out in outs:
            out.abandon()
        raise
    made = {o.final for o in outs} | set(result.empty)
    # a wanted file after a fatal error frame of its run: never reached, so no row
    result.empty += [target[f.path][0] for f in p.wanted if target[f.path][0] not in made]
    return result, outs


def max_line_of(settings: CollectorSettings) -> int:
    """The longest raw line a collector with these settings can write: a frame of
    ``max_message_size`` bytes, JSON-escaped (at most 6 characters a byte), plus room."""
    return 6 * settings.max_message_size + (1 << 20)


def base_settings(config_path: Path | None, stream: Stream, data_dir: Path) -> CollectorSettings:
    """The stream's settings from the config file (no credentials: a parse needs none)."""
    config = load_config(config_path)
    return build_collector_settings(
        config,
        exchange=stream.exchange,
        symbol=stream.symbol,
        data_type=stream.data_type,
        data_dir=data_dir,
        environ={},
    )


def summary(stream: Stream, result: Result, where: Path, seconds: float) -> str:
    rows = sum(n for _, n in result.written)
    parts = [
        f"rebuild: {stream.label}: {len(result.written)} parsed file(s), {rows} rows, "
        f"written under {where} from {result.frames} frames ({result.lines} raw lines, "
        f"{result.context_files} file(s) read for context) in {seconds:.2f} s"
    ]
    if result.empty:
        parts.append(f"{len(result.empty)} hour(s) gave no row (no file)")
    skipped = {k: v for k, v in sorted(result.skipped.items()) if v and k != "output_marker"}
    if skipped:
        parts.append("raw lines skipped: " + ", ".join(f"{k}={v}" for k, v in skipped.items()))
    if result.parse_errors:
        parts.append(
            "frames without rows: "
            + ", ".join(f"{k}={v}" for k, v in sorted(result.parse_errors.items()))
        )
    return "; ".join(parts)


# --- the command line ----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="collector rebuild",
        description=(
            "Rebuild parsed files from raw files through the collector's own processor: each "
            "raw file gives the parsed file of the same stem, byte for byte what the live "
            "collector wrote from it (with the adapter of this checkout)."
        ),
        epilog=(
            "Example: python -m collector rebuild --data_dir /tmp/rebuilt "
            "data/binance/BTCUSDT/book/raw/2024-05-01/. "
            "In place (replaces the parsed files, keeps the previous ones under "
            "{data_dir}/.rebuild/prev/ until S3 sync delivered the new ones): "
            "python -m collector rebuild --in-place --yes data/binance/BTCUSDT/book/raw"
        ),
    )
    p.add_argument("raw", nargs="+", type=Path, metavar="RAW", help="raw files or directories")
    p.add_argument(
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        default=None,
        help="where the parsed files go (standard layout); not inside the input's data dir",
    )
    p.add_argument("--config", type=Path, default=None, help="config file (default: config.toml)")
    p.add_argument(
        "--in-place",
        dest="in_place",
        action="store_true",
        help="replace the parsed files of the data dir that holds RAW (closed files only)",
    )
    p.add_argument("--yes", action="store_true", help="confirm --in-place")
    p.add_argument(
        "--log-level",
        default="error",
        choices=["debug", "info", "warning", "error"],
        help="the processor's log lines (default: error; the summary line counts the rest)",
    )
    return p


def main(argv: Sequence[str]) -> int:
    """``python -m collector rebuild ...``; exit 0 done, 2 bad input."""
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop: work files removed
    signal.signal(signal.SIGINT, signal.default_int_handler)
    args = build_parser().parse_args(list(argv))
    # The processor's own lines (a resync, a gap) were logged live already; what a rebuild
    # finds is counted in its summary line. Errors only, then.
    configure_logging(args.log_level)
    t0 = time.monotonic()
    try:
        if args.in_place:
            from collector import rebuild_inplace

            line = rebuild_inplace.run(args.raw, args.data_dir, args.config, confirmed=args.yes)
        else:
            line = _run_to(args.raw, args.data_dir, args.config, t0)
    except ConfigError as exc:  # RebuildError too
        print(f"collector rebuild: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("collector rebuild: interrupted (nothing half-written is left)", file=sys.stderr)
        return 130
    print(line)
    return 0


def _run_to(raw: Sequence[Path], data_dir: str | None, config: Path | None, t0: float) -> str:
    if data_dir is None:
        raise RebuildError("--data_dir OUT is required (or --in-place --yes)")
    out = check_path_value(data_dir, what="--data_dir")
    stream, wanted = resolve_inputs(raw)
    if inside(out, stream.root):
        raise RebuildError(
            f"--data_dir {out} is inside the input's data dir {stream.root}: "
            "give another directory, or --in-place --yes to replace the parsed files there"
        )
    base = base_settings(config, stream, out)
    max_line = max_line_of(base)
    target = {}
    for raw_path in wanted:
        final = out / stream.parsed_rel(raw_path)
        target[raw_path] = (final, layout.part_path(final))
    todo = plan(stream, wanted, base, max_line)  # every check before anything is created
    ensure_writable_dir(out)
    result, outs = execute(stream, todo, target, max_line)
    for o in outs:
        os.replace(o.work, o.final)
        result.written.append((o.final, o.rows))
    for final in result.empty:
        final.unlink(missing_ok=True)  # an earlier rebuild's file of an hour that has none
    for d in sorted({o.final.parent for o in outs}):
        fsync_dir(d)
    return summary(stream, result, out, time.monotonic() - t0)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
