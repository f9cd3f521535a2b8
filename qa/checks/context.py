"""What a check gets: the parsed file's frame (:class:`FrameInput`) and what is known about the
file (:class:`Context`: its name's stream and hour, the thresholds, the adapter's id rule)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collector.common.layout import FileInfo
from qa.settings import Thresholds

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class Context:
    info: FileInfo
    thresholds: Thresholds
    ids_contiguous: bool = False


@dataclass(frozen=True)
class FrameInput:
    """A parsed file as read by :mod:`qa.reader`.

    ``df`` has the spec's columns with the spec's types, one row per well-formed line; in
    the slow path (a value did not parse) it also has ``_bad_<col>`` boolean columns
    marking values that were present but ill-formed, and ``_line`` (1-based line number).
    ``ragged`` counts lines with the wrong number of fields (not in ``df``).
    """

    df: pl.DataFrame
    ragged: int = 0
    ragged_lines: Sequence[int] = ()
