"""What each host delivered: its parsed files, QA reports and raw twins, by stream and hour.

A host's copy lives in a store in the standard layout
``{exchange}/{symbol}/{data_type}/{parsed|raw}/{YYYY-MM-DD}/{name}``. File names are read
with :mod:`collector.common.layout` only. Anything that does not fit (a host id, an exchange,
a symbol outside its adapter's grammar, a name that is not a data file of that stream and
day) is refused: counted, named in one log line, never read. What the sync itself puts beside
a host's streams (its status snapshot ``_status/``) and the streams' QA completeness records
(``completeness/``, never listed: only ``parsed/`` and ``raw/`` are) are not data files and not
refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog

from collector.common.config import HOST_ID
from collector.common.layout import (
    HOUR_MS,
    PARSED,
    PARSED_SUFFIX,
    RAW,
    RAW_SUFFIX,
    REPORT_SUFFIX,
    FileInfo,
    parse_file_name,
)
from collector.exchanges import ADAPTERS
from ops.dataset.store import Obj, Store
from ops.sync.publish import STATUS_REL

# Directories the sync writes under a host's prefix beside its streams.
HOST_META = frozenset({STATUS_REL.split("/")[0]})

log = structlog.get_logger()


@dataclass(frozen=True, slots=True, order=True)
class Stream:
    exchange: str
    symbol: str
    data_type: str


@dataclass(frozen=True, slots=True)
class HostFile:
    """One parsed file of one host, with its QA report and raw twin where delivered."""

    host: str
    key: str
    tag: str
    info: FileInfo
    report: Obj | None
    raw: Obj | None

    @property
    def hour_ms(self) -> int:
        return self.info.start_ms // HOUR_MS * HOUR_MS


@dataclass
class Inventory:
    """Every host's files of the dates looked at."""

    hosts: tuple[str, ...] = ()
    files: dict[Stream, dict[int, list[HostFile]]] = field(default_factory=dict)
    # stream -> the hosts that delivered any file of it in the dates looked at
    stream_hosts: dict[Stream, set[str]] = field(default_factory=dict)
    refused: int = 0
    refused_examples: list[str] = field(default_factory=list)

    def refuse(self, what: str) -> None:
        self.refused += 1
        if len(self.refused_examples) < 5:
            self.refused_examples.append(what[:200])

    def hour(self, stream: Stream, hour_ms: int) -> list[HostFile]:
        return self.files.get(stream, {}).get(hour_ms, [])


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d")


def discover_hosts(root: Store, inv: Inventory) -> list[str]:
    """Host ids under the hosts' prefix (names that are no host id are refused)."""
    hosts = []
    for name in root.children(""):
        if HOST_ID.fullmatch(name):
            hosts.append(name)
        else:
            inv.refuse(f"host {name!r}")
    return hosts


def _valid_stream(exchange: str, symbol: str, data_type: str) -> bool:
    adapter = ADAPTERS.get(exchange)
    return (
        adapter is not None
        and adapter.SYMBOL_PATTERN.fullmatch(symbol) is not None
        and data_type in adapter.DATA_TYPES
    )


def scan_host(
    host: str, store: Store, days: Iterable[str], inv: Inventory, streams: set[Stream] | None
) -> None:
    """Add one host's files of ``days`` to ``inv`` (only ``streams`` when given)."""
    for exchange in store.children(""):
        if exchange in HOST_META:
            continue
        for symbol in store.children(exchange):
            for data_type in store.children(f"{exchange}/{symbol}"):
                if not _valid_stream(exchange, symbol, data_type):
                    inv.refuse(f"{host}: stream {exchange}/{symbol}/{data_type}")
                    continue
                stream = Stream(exchange, symbol, data_type)
                if streams is not None and stream not in streams:
                    continue
                for day in days:
                    _scan_day(host, store, stream, day, inv)


def _scan_day(host: str, store: Store, stream: Stream, day: str, inv: Inventory) -> None:
    base = f"{stream.exchange}/{stream.symbol}/{stream.data_type}"
    parsed: dict[str, Obj] = {}
    reports: dict[str, Obj] = {}
    raws: dict[str, Obj] = {}
    for kind in (PARSED, RAW):
        prefix = f"{base}/{kind}/{day}/"
        for obj in store.objects(prefix):
            name = obj.key[len(prefix) :]
            if kind == PARSED and name.endswith(REPORT_SUFFIX):
                reports[name.removesuffix(REPORT_SUFFIX)] = obj
                continue
            suffix = PARSED_SUFFIX if kind == PARSED else RAW_SUFFIX
            info = _info(name, suffix, stream, day)
            if info is None:
                if not name.endswith(".part"):
                    inv.refuse(f"{host}: {obj.key}")
                continue
            (parsed if kind == PARSED else raws)[name.removesuffix(suffix)] = obj
    if not parsed and not raws:
        return
    inv.stream_hosts.setdefault(stream, set()).add(host)
    hours = inv.files.setdefault(stream, {})
    for stem, obj in sorted(parsed.items()):
        info = parse_file_name(stem + PARSED_SUFFIX)
        f = HostFile(host, obj.key, obj.tag, info, reports.get(stem), raws.get(stem))
        hours.setdefault(f.hour_ms, []).append(f)


def _info(name: str, suffix: str, stream: Stream, day: str) -> FileInfo | None:
    """The file's name, checked against the stream and day it was found under."""
    if "/" in name or not name.endswith(suffix):
        return None
    try:
        info = parse_file_name(name)
    except ValueError:
        return None
    if (info.exchange, info.symbol, info.data_type) != (
        stream.exchange,
        stream.symbol,
        stream.data_type,
    ) or day_of(info.start_ms) != day:
        return None
    return info


def report_refused(inv: Inventory) -> None:
    if inv.refused:
        log.warning("dataset.refused_keys", count=inv.refused, examples=inv.refused_examples)
