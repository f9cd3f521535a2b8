"""QA settings: the ``[qa]`` section of the config file, validated once, frozen.

Thresholds are per data type where a data type needs its own value, and a stream
(``exchange:symbol:data_type``) may override ``row_count`` and ``max_silence_s`` in
``[qa.overrides."binance:BTCUSDT:trade"]``. The levels a book file may hold are the
collector's own ``book_depth``, and QA replays a raw file with its collector's options, both
including a stream's ``[collector.overrides]`` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collector.common.config import Config, get_float
from collector.common.errors import ConfigError
from collector.config import get_book_depth, stream_overrides
from collector.exchanges import EXCHANGES
from collector.exchanges.base import OptionValue
from collector.model import DATA_TYPES, DEFAULT_BOOK_DEPTH
from collector.settings import read_options

_DEFAULT_ROW_COUNT = {"trade": (1, 50_000_000), "book": (1, 100_000_000), "l3": (1, 200_000_000)}
_DEFAULT_SILENCE_S = {"trade": 900.0, "book": 120.0, "l3": 120.0}


@dataclass(frozen=True)
class Thresholds:
    """What turns a count into ``warn`` or ``fail`` (percentages are of rows unless named)."""

    row_count: Mapping[str, tuple[int, int]] = field(
        default_factory=lambda: dict(_DEFAULT_ROW_COUNT)
    )
    max_silence_s: Mapping[str, float] = field(default_factory=lambda: dict(_DEFAULT_SILENCE_S))
    overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    bad_rows_warn_pct: float = 0.0
    bad_rows_fail_pct: float = 0.1
    missing_ids_warn_pct: float = 0.0
    missing_ids_fail_pct: float = 1.0
    disorder_warn_pct: float = 0.0
    disorder_fail_pct: float = 1.0
    backwards_tolerance_ms: float = 1000.0
    downtime_warn_s: float = 0.0
    downtime_fail_s: float = 300.0
    hour_tolerance_s: float = 5.0
    plausible_window_h: float = 24.0
    book_depth: int = DEFAULT_BOOK_DEPTH
    compare_raw: bool = True
    # The collectors' adapter options per exchange (from the same config file): the parser QA
    # replays a raw file with must be the stream's own (e.g. Binance binance_trade_stream).
    exchange_options: Mapping[str, Mapping[str, OptionValue]] = field(default_factory=dict)
    # (exchange, symbol) → the stream's own book_depth ([collector.overrides] of its book).
    book_depths: Mapping[tuple[str, str], int] = field(default_factory=dict)

    # (exchange, symbol, data_type) → adapter options of its [collector.overrides] entry.
    stream_options: Mapping[tuple[str, str, str], Mapping[str, OptionValue]] = field(
        default_factory=dict
    )

    def depth_of(self, exchange: str, symbol: str) -> int:
        """Levels per side the collector writes to this stream's book files."""
        return self.book_depths.get((exchange, symbol), self.book_depth)

    def options_of(self, exchange: str, symbol: str, data_type: str) -> dict[str, OptionValue]:
        """The adapter options this stream's collector runs with (its override wins)."""
        own = self.stream_options.get((exchange, symbol, data_type), {})
        return {**self.exchange_options.get(exchange, {}), **own}

    def rows_range(self, exchange: str, symbol: str, data_type: str) -> tuple[int, int]:
        o = self.overrides.get(f"{exchange}:{symbol}:{data_type}", {})
        if "row_count" in o:
            lo, hi = o["row_count"]
            return int(lo), int(hi)
        return self.row_count.get(data_type, (1, 10**12))

    def silence_s(self, exchange: str, symbol: str, data_type: str) -> float:
        o = self.overrides.get(f"{exchange}:{symbol}:{data_type}", {})
        if "max_silence_s" in o:
            return float(o["max_silence_s"])
        return self.max_silence_s.get(data_type, 900.0)


@dataclass(frozen=True)
class QASettings:
    data_dir: Path
    host_id: str
    interval_min: float
    thresholds: Thresholds


def _range(value: Any, what: str) -> tuple[int, int]:
    ok = (
        isinstance(value, list)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
        and value[0] <= value[1]
    )
    if not ok:
        raise ConfigError(f"{what} = {value!r} must be [min, max] with 0 <= min <= max")
    return int(value[0]), int(value[1])


def _per_type(table: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{what} = {table!r} must be a table of data types")
    unknown = [k for k in table if k not in DATA_TYPES]
    if unknown:
        raise ConfigError(f"{what}: unknown data type {unknown[0]!r} (one of {DATA_TYPES})")
    return table


def build_thresholds(config: Config) -> Thresholds:
    """Validate the ``[qa]`` thresholds; raises ConfigError naming the bad value."""
    qa = config.section("qa")
    w = f"{config.path} [qa]"
    streams = stream_overrides(config)
    row_count = dict(_DEFAULT_ROW_COUNT)
    for dt, v in _per_type(qa.get("row_count", {}), f"{w} row_count").items():
        row_count[dt] = _range(v, f"{w} row_count.{dt}")
    silence = dict(_DEFAULT_SILENCE_S)
    for dt, v in _per_type(qa.get("max_silence_s", {}), f"{w} max_silence_s").items():
        silence[dt] = get_float({dt: v}, dt, 0.0, where=f"{w} max_silence_s", min_value=0.0)
    overrides: dict[str, dict[str, Any]] = {}
    raw_over = qa.get("overrides", {})
    if not isinstance(raw_over, Mapping):
        raise ConfigError(f"{w} overrides must be a table")
    for key, table in raw_over.items():
        wk = f"{w} overrides.{key!r}"
        parts = str(key).split(":")
        if len(parts) != 3 or parts[2] not in DATA_TYPES or not all(parts):
            raise ConfigError(f"{wk}: key must be 'exchange:symbol:data_type'")
        if not isinstance(table, Mapping):
            raise ConfigError(f"{wk} must be a table")
        entry: dict[str, Any] = {}
        for k, v in table.items():
            if k == "row_count":
                entry[k] = _range(v, f"{wk} row_count")
            elif k == "max_silence_s":
                entry[k] = get_float(table, k, 0.0, where=wk, min_value=0.0)
            else:
                raise ConfigError(f"{wk}: unknown key {k!r} (row_count, max_silence_s)")
        overrides[str(key)] = entry
    compare_raw = qa.get("compare_raw", True)
    if not isinstance(compare_raw, bool):
        raise ConfigError(f"{w} compare_raw = {compare_raw!r} must be true or false")

    def pct(key: str, default: float) -> float:
        return get_float(qa, key, default, where=w, min_value=0.0, max_value=100.0)

    def sec(key: str, default: float) -> float:
        return get_float(qa, key, default, where=w, min_value=0.0)

    return Thresholds(
        row_count=row_count,
        max_silence_s=silence,
        overrides=overrides,
        bad_rows_warn_pct=pct("bad_rows_warn_pct", 0.0),
        bad_rows_fail_pct=pct("bad_rows_fail_pct", 0.1),
        missing_ids_warn_pct=pct("missing_ids_warn_pct", 0.0),
        missing_ids_fail_pct=pct("missing_ids_fail_pct", 1.0),
        disorder_warn_pct=pct("disorder_warn_pct", 0.0),
        disorder_fail_pct=pct("disorder_fail_pct", 1.0),
        backwards_tolerance_ms=get_float(
            qa, "backwards_tolerance_ms", 1000.0, where=w, min_value=0.0
        ),
        downtime_warn_s=sec("downtime_warn_s", 0.0),
        downtime_fail_s=sec("downtime_fail_s", 300.0),
        hour_tolerance_s=sec("hour_tolerance_s", 5.0),
        plausible_window_h=get_float(qa, "plausible_window_h", 24.0, where=w, min_value=1.0),
        book_depth=get_book_depth(config),
        compare_raw=compare_raw,
        book_depths={
            (ex, sym): int(o.values["book_depth"])
            for (ex, sym, _), o in streams.items()
            if "book_depth" in o.values
        },
        exchange_options={name: read_options(config, name) for name in EXCHANGES},
        stream_options={k: o.options for k, o in streams.items() if o.options},
    )


def build_qa_settings(config: Config, *, data_dir: Path | None = None) -> QASettings:
    qa = config.section("qa")
    return QASettings(
        data_dir=data_dir if data_dir is not None else config.data_dir,
        host_id=config.host_id,
        interval_min=get_float(
            qa, "interval_min", 30.0, where=f"{config.path} [qa]", min_value=0.01
        ),
        thresholds=build_thresholds(config),
    )
