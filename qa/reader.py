"""Reading data files for QA: parsed CSV into a typed polars frame, raw JSONL line by line.

Fast path: polars reads the gzip file with the spec's exact types (its own inflater and a
multithreaded CSV parser; several times faster than the standard library's gzip alone). A
file with a value that does not parse takes the slow path: each line is read as one string,
split, and cast value by value, so that every ill-formed value is counted and located.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import polars as pl

from qa.checks.context import FrameInput
from qa.checks.specs import TypeSpec


class UnreadableFileError(Exception):
    """The file is not a complete gzip file, or it has no CSV header."""


def read_header(path: Path) -> str:
    """The first line of a gzip file, without its newline."""
    try:
        with gzip.open(path, "rb") as fh:
            line = fh.readline(1 << 16)
    except (OSError, EOFError, zlib.error) as exc:
        raise UnreadableFileError(f"not a readable gzip file: {exc}") from exc
    if not line:
        raise UnreadableFileError("empty file (no header)")
    return line.decode("utf-8", errors="replace").rstrip("\r\n")


def read_parsed(path: Path, spec: TypeSpec) -> FrameInput:
    """Read a parsed CSV file (header already checked) into a :class:`FrameInput`."""
    schema = {c: spec.dtypes[c] for c in spec.columns}
    try:
        return FrameInput(df=pl.read_csv(path, schema=schema, has_header=True))
    except pl.exceptions.ComputeError:
        pass  # a value that does not parse, or a line with too many fields
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnreadableFileError(f"truncated or corrupt gzip: {exc}") from exc
    return _read_slow(path, spec)


def _read_slow(path: Path, spec: TypeSpec) -> FrameInput:
    try:
        lines = pl.read_csv(
            path,
            has_header=False,
            separator="\x00",
            quote_char=None,
            schema={"line": pl.String()},
        )
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise UnreadableFileError(f"truncated or corrupt gzip: {exc}") from exc
    n = len(spec.columns)
    d = lines.with_row_index("_line", offset=1).slice(1)  # line 1 is the header
    line = pl.col("line")
    ragged_mask = line.is_not_null() & (line.str.count_matches(",", literal=True) + 1 != n)
    ragged = d.filter(ragged_mask)
    d = d.filter(~ragged_mask)
    parts = (
        d.select(
            "_line",
            line.str.split_exact(",", n - 1).struct.rename_fields(list(spec.columns)).alias("f"),
        )
        .unnest("f")
        .with_columns(
            [
                pl.when(pl.col(c) == "").then(None).otherwise(pl.col(c)).alias(c)
                for c in spec.columns
            ]
        )
    )
    typed: list[pl.Expr] = [pl.col("_line").cast(pl.Int64)]
    bad: list[pl.Expr] = []
    for c in spec.columns:
        dtype = spec.dtypes[c]
        if isinstance(dtype, pl.Enum | pl.String):
            typed.append(pl.col(c))  # set membership is checked by check_frame
            continue
        cast = pl.col(c).cast(dtype, strict=False)
        typed.append(cast.alias(c))
        bad.append((pl.col(c).is_not_null() & cast.is_null()).alias(f"_bad_{c}"))
    df = parts.select(typed + bad)
    keep = [c for c in df.columns if not c.startswith("_bad_") or df.get_column(c).any()]
    return FrameInput(
        df=df.select(keep),
        ragged=ragged.height,
        ragged_lines=[int(v) for v in ragged.get_column("_line").head(3).to_list()],
    )


# The longest raw line QA reads (a frame is at most `max_message_size`, 16 MiB by default,
# and its JSON escapes can double it); a longer one is skipped, never held in memory whole.
MAX_RAW_LINE = 64 << 20
# What a skipped line is read as (not JSON: counted as a bad line).
OVERSIZED = b"<oversized line>"


def iter_lines(path: Path, max_line: int = MAX_RAW_LINE) -> Iterator[bytes]:
    """Lines of a gzip JSONL file; a truncated tail ends the iteration with EOFError. A line
    longer than ``max_line`` bytes is read in pieces, dropped, and given as :data:`OVERSIZED`."""
    with gzip.open(path, "rb") as fh:
        while True:
            line = fh.readline(max_line + 1)
            if not line:
                return
            if len(line) > max_line and not line.endswith(b"\n"):
                while True:  # the rest of the oversized line
                    rest = fh.readline(1 << 20)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield OVERSIZED
                continue
            yield line
