"""A delivered parsed file → a typed, validated polars frame (nothing forged gets through).

Every value is checked again here, whatever the host's collector did: the header must be the
data type's, each line must have exactly its columns, ids and times must be integers in
range, prices and sizes decimals, sides and flags their documented values, the symbol the
stream's. A line that fails is counted (``bad_rows``) and dropped; a file that is not a
readable gzip CSV is counted (``unreadable``) and not used at all. Prices and quantities stay
the exchange's decimal strings (exact; never float).
"""

from __future__ import annotations

import gzip
import io
import zlib
from dataclasses import dataclass

import polars as pl

from collector.exchanges.base import MAX_DECIMAL_CHARS, MAX_TIME_MS, MAX_TIME_US, MIN_TIME_MS
from collector.model import COLUMNS

_INT = r"^[0-9]{1,19}$"
# The collector's decimals (base.py grammar) plus Bitfinex's JSON-number text (exponent).
_DECIMAL = r"^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]{1,3})?$"
_MS = ("ms", MIN_TIME_MS, MAX_TIME_MS)
_US = ("us", MIN_TIME_MS * 1000, MAX_TIME_US)

# column -> its check: "int" | ("ms"|"us", lo, hi) | "decimal" | "symbol" | a set of values |
# "text" (free but bounded; order ids, reasons)
_CHECKS: dict[str, object] = {
    "event_time": _MS,
    "trade_time": _MS,
    "timestamp": _MS,
    "local_time": _US,
    "trade_id": "int",
    "sequence": "int",
    "level": "int",
    "price": "decimal",
    "quantity": "decimal",
    "size": "decimal",
    "symbol": "symbol",
    "is_buyer_maker": frozenset({"True", "False"}),
    "side": frozenset({"B", "A"}),
    "action": frozenset({"add", "change", "delete", "match", "snapshot"}),
    "order_id": "text",
    "maker_order_id": "text",
    "taker_order_id": "text",
    "reason": "text",
}
# l3 columns an exchange may leave empty (README "L3 files")
_NULLABLE = {
    "trade": frozenset(),
    "book": frozenset(),
    "l3": frozenset(
        {
            "sequence",
            "side",
            "price",
            "size",
            "trade_id",
            "maker_order_id",
            "taker_order_id",
            "reason",
            "order_id",
        }
    ),
}
_TEXT = r"^[A-Za-z0-9_.:-]{1,64}$"
INT_COLUMNS = frozenset(c for c, k in _CHECKS.items() if k == "int" or isinstance(k, tuple))


@dataclass(frozen=True, slots=True)
class Parsed:
    df: pl.DataFrame  # typed columns of the data type, in the parsed schema's order
    rows: int  # data lines in the file
    bad_rows: int


class UnreadableError(Exception):
    """Not a readable gzip CSV file with the data type's header."""


def schema(data_type: str) -> dict[str, pl.DataType]:
    """The typed schema of a data type's rows (before ``source``)."""
    out: dict[str, pl.DataType] = {}
    for c in COLUMNS[data_type]:
        if c in INT_COLUMNS:
            out[c] = pl.Int64()
        elif c == "is_buyer_maker":
            out[c] = pl.Boolean()
        else:
            out[c] = pl.String()
    return out


def read_parsed(data: bytes, data_type: str, symbol: str) -> Parsed:
    """Parse and validate one parsed file (gzip CSV bytes); raises UnreadableError."""
    columns = COLUMNS[data_type]
    head = _header(data)
    if head != ",".join(columns):
        raise UnreadableError(f"wrong header {head[:120]!r}")
    # Fast path: integers parsed by polars itself (a value that is not one fails the whole
    # read); the slow path splits each line and checks every value.
    fast = {c: pl.Int64() if c in INT_COLUMNS else pl.String() for c in columns}
    ragged = 0
    try:
        df = pl.read_csv(data, schema=fast, has_header=True, quote_char=None)
    except pl.exceptions.ComputeError:
        df, ragged = _split(_lines(data), columns)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnreadableError(f"not a readable gzip CSV file: {exc}") from exc
    total = df.height + ragged
    good = df.filter(_valid(df, data_type, symbol))
    typed = good.select(_typed(c, data_type) for c in columns)
    return Parsed(df=typed, rows=total, bad_rows=total - typed.height)


def _header(data: bytes) -> str:
    """The first line, from the first gzip member only (no need to inflate the file)."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as fh:
            line = fh.readline(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableError(f"not a readable gzip file: {exc}") from exc
    return line.decode("utf-8", "replace").rstrip("\r\n")


def _lines(data: bytes) -> pl.Series:
    try:
        df = pl.read_csv(
            data,
            has_header=False,
            separator="\x00",
            quote_char=None,
            schema={"line": pl.String()},
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnreadableError(f"not a readable gzip CSV file: {exc}") from exc
    return df.get_column("line").slice(1)


def _split(lines: pl.Series, columns: tuple[str, ...]) -> tuple[pl.DataFrame, int]:
    """Lines with exactly the schema's number of fields, split; and how many had not."""
    n = len(columns)
    d = pl.DataFrame({"line": lines}).filter(pl.col("line").is_not_null())
    fits = pl.col("line").str.count_matches(",", literal=True) == n - 1
    good = d.filter(fits)
    split = good.select(
        pl.col("line").str.split_exact(",", n - 1).struct.rename_fields(list(columns)).alias("f")
    ).unnest("f")
    split = split.with_columns(
        pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c) for c in columns
    )
    return split, d.height - good.height


def _valid(df: pl.DataFrame, data_type: str, symbol: str) -> pl.Expr:
    nullable = _NULLABLE[data_type]
    conds: list[pl.Expr] = []
    for c in COLUMNS[data_type]:
        col = pl.col(c)
        check = _CHECKS[c]
        if check == "int" or isinstance(check, tuple):
            if df.schema[c] == pl.Int64:
                v = col
                ok = v >= 0
            else:
                v = col.cast(pl.Int64, strict=False)
                ok = col.str.contains(_INT) & v.is_not_null()
            if isinstance(check, tuple):
                ok = ok & (v >= check[1]) & (v < check[2])
        elif check == "decimal":
            ok = col.str.contains(_DECIMAL) & (col.str.len_bytes() <= MAX_DECIMAL_CHARS)
        elif check == "symbol":
            ok = col == symbol
        elif check == "text":
            ok = col.str.contains(_TEXT)
        else:
            assert isinstance(check, frozenset)
            ok = col.is_in(sorted(check))
        if c in nullable:
            ok = col.is_null() | ok
        conds.append(ok.fill_null(False))
    return pl.all_horizontal(conds)


def _typed(c: str, data_type: str) -> pl.Expr:
    dtype = schema(data_type)[c]
    if isinstance(dtype, pl.Boolean):
        return (pl.col(c) == "True").alias(c)
    return pl.col(c).cast(dtype).alias(c)
