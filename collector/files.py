"""One stream's files: the raw and parsed hourly writers, the status file, the resume point.

Raw and parsed files of an hour share a stem (one :class:`collector.writer.HourStamps`).
Writing blocks (compression, ``write``, ``fsync``, rename); the collector's upkeep
(collector/upkeep.py) decides where it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from collector.common import layout
from collector.common.structloglib import structlog
from collector.model import COLUMNS
from collector.settings import CollectorSettings
from collector.writer import (
    BACKLOG_LINES,
    PARSED_COMPRESS_LEVEL,
    Chunk,
    DiskFullError,
    HourlyGzipWriter,
    HourStamps,
    last_field,
    recover,
)

log = structlog.get_logger()

# The resume point is looked for in at most this many newest parsed files.
RESUME_FILES = 72
TRADE_ID_COLUMN = COLUMNS["trade"].index("trade_id")


class StreamFiles:
    """The raw and parsed writers of one stream.

    ``on_backlog`` is called when either writer's newest chunk reaches ``backlog_lines``
    lines (:class:`HourlyGzipWriter`): the owner then writes before the next interval.
    ``on_due`` is called by the first frame received after the time given to
    :meth:`call_when_due` (the raw writer sees every frame first).
    """

    def __init__(
        self,
        settings: CollectorSettings,
        on_backlog: Callable[[], None] | None = None,
        backlog_lines: int = BACKLOG_LINES,
        on_due: Callable[[], None] | None = None,
    ) -> None:
        s = settings
        self.dir = layout.stream_dir(s.data_dir, s.exchange, s.symbol, s.data_type)
        name = layout.stream_name(s.exchange, s.symbol, s.data_type)
        stamps = HourStamps()
        self.raw = HourlyGzipWriter(
            self.dir / layout.RAW,
            name,
            layout.RAW_SUFFIX,
            stamps=stamps,
            on_close=_log_closed,
            on_backlog=on_backlog,
            backlog_lines=backlog_lines,
            on_due=on_due,  # every frame is written raw first: the raw writer sees them all
        )
        header = ",".join(COLUMNS[s.data_type]) + "\n"
        self.parsed = HourlyGzipWriter(
            self.dir / layout.PARSED,
            name,
            layout.PARSED_SUFFIX,
            header=header,
            level=PARSED_COMPRESS_LEVEL,
            stamps=stamps,
            on_close=_log_closed,
            on_backlog=on_backlog,
            backlog_lines=backlog_lines,
        )
        self.status_path = layout.status_path(self.dir)

    def call_when_due(self, ts_s: float) -> None:
        self.raw.call_when_due(ts_s)

    def recover(self) -> list[Path]:
        return recover(self.dir / layout.RAW) + recover(self.dir / layout.PARSED)

    @property
    def queued_lines(self) -> int:
        return self.raw.queued_lines + self.parsed.queued_lines

    def write(
        self, raw: list[Chunk], parsed: list[Chunk], now_s: float, *, fsync: bool = True
    ) -> tuple[list[Chunk], list[Chunk], DiskFullError | None]:
        """Write raw, then parsed (blocking; ``fsync``: on disk when it returns, else in the
        kernel). On a full disk, returns what is left to write."""
        try:
            self.raw.write(raw, now_s, fsync=fsync)
        except DiskFullError as exc:
            return exc.unwritten, parsed, exc
        try:
            self.parsed.write(parsed, now_s, fsync=fsync)
        except DiskFullError as exc:
            return [], exc.unwritten, exc
        return [], [], None

    @property
    def unsynced(self) -> bool:
        return self.raw.unsynced or self.parsed.unsynced

    def hour_ended(self, now_s: float) -> bool:
        """An open file's hour is over: the next write closes it."""
        return self.raw.open_hour_ended(now_s) or self.parsed.open_hour_ended(now_s)

    @property
    def has_open_file(self) -> bool:
        return self.raw.is_open or self.parsed.is_open

    def sync(self) -> float | None:
        """fsync what both writers wrote without it; how long the oldest of it waited
        (None: nothing did)."""
        waited = [w for w in (self.raw.sync(), self.parsed.sync()) if w is not None]
        return max(waited) if waited else None

    def close(self) -> None:
        self.raw.close()
        self.parsed.close()

    def last_trade_id(self) -> tuple[int, str] | None:
        """The last trade id in the files on disk (newest parsed file that has a row)."""
        paths = sorted((self.dir / layout.PARSED).glob(f"*/*{layout.PARSED_SUFFIX}"), reverse=True)
        found = last_field(paths[:RESUME_FILES], TRADE_ID_COLUMN)
        return None if found is None else (int(found[1]), found[0].name)


def _log_closed(path: Path) -> None:
    log.info("file.closed", path=str(path))
