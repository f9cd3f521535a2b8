"""The contract every exchange module fulfils, and tiny shared helpers.

An exchange module is pure: no sockets, no clock, no logging, no environment, no globals
that change. Time comes in as an argument. Generic code (session, book, writer, settings,
secmaster, QA) reads the members of :class:`ExchangeAdapter` through ``ADAPTERS`` as plain
attributes and never branches on an exchange name.

Adding an exchange (the checklist; tardis ``ADD_NEW_EXCHANGE.md`` is the model):

1. ``collector/exchanges/<id>.py`` with every member of :class:`ExchangeAdapter` (an optional
   capability it lacks is an explicit ``None``; mypy checks the module against the Protocol
   through ``ADAPTERS``), and a docstring holding the coverage table (channel → variants →
   action → evidence), the boundary grammar of its fields and the doc links; the documented
   fields of each message type it parses (``FIELDS``, a :class:`FieldWatch`), its unknown
   types and missing fields named (see "What each frame is" below);
2. its entry in ``ADAPTERS`` (``collector/exchanges/__init__.py``): the one exchange list.
   Everything else follows from it: ``--exchange`` choices, the ``[exchanges.<id>]`` config
   table with the options the adapter declares (``OPTIONS``), credentials from the variables
   it names (``CREDENTIAL_ENV``), the security master's listing sources (``build_listings_url``
   not None), QA's raw counts (``parse``) and L3 cross-check (``parse_l2_view``,
   ``parse_checksum``);
3. its defaults in ``config.toml`` (``[exchanges.<id>]``: ``ws_url``, ``rest_url``,
   ``max_connection_age_s``, its options, each documented);
4. its venue in the replay server (``ops/replay``), so tests and the demo can speak its
   protocol;
5. fixtures (recorded, or built from the docs and cited), parse tests, property tests
   (``tests/collector/test_adapter_properties.py``) and one session test against the replay
   server.

The boundary grammar (issue 16, "make nothing up") also lives here: every exchange value
that can become a field of a record is checked by one of the helpers below before it does,
and a value that fails raises :class:`UnexpectedMessage` with a ``reason`` from
:mod:`collector.common.errors` and the exchange's own field name in ``field``:

- decimals (prices, quantities): ASCII digits, at most one point with digits on both sides,
  at most :data:`MAX_DECIMAL_CHARS` characters, no sign and no exponent (Bitfinex, whose
  numbers are JSON numbers, has its own signed grammar in its module). A price is > 0; a
  quantity is > 0 except a book level's, where any zero means "delete the level";
- ids: JSON integers (never bools, floats or strings, unless the exchange sends ids as
  strings; then the string's own grammar), ``0 <= id <`` :data:`MAX_ID`;
- times: epoch values in ``[MIN_TIME_MS, MAX_TIME_MS)`` (2009-01-01 to 2100-01-01 UTC), ISO
  times parsed strictly (so Coinbase's placeholder ``0001-01-01T00:00:00Z`` is a bad value);
- symbols: the stream's own (``make_parser``) or, for the symbol-agnostic module ``parse``,
  the adapter's ``SYMBOL_PATTERN``. None of these grammars admits a comma, quote or newline,
  so no exchange value can add a column or a row to a CSV file.

What each frame is (issue 19, "knowing that an exchange changed"; the kinds are
``errors.FRAME_KINDS``, counted per frame by the processor in ``Stats.frames_by_kind``):

- *parsed*: records come back (data, or a ``Control`` for a known control frame: the
  subscription ack, a heartbeat, an error, a reconnect or maintenance notice);
- *ignored*: ``[]`` for a known type the stream does not record (Binance ``bookTicker``,
  Coinbase ``ticker``, Bitfinex ``tu``);
- *unknown type*, *missing field*, *malformed* (and *bad value*, *foreign symbol*): an
  :class:`UnexpectedMessage`; an unknown type and a missing field carry the message type as
  the frame names it (``kind``: :func:`unknown_type` and :func:`missing_field` take it,
  ``errors.clean_name`` bounds it), so what is new is named (``unknown_type:teleport``,
  ``missing_field:match.price``);
- *unexpected field*: a known type that carries a field the adapter does not document is
  still parsed, and told to the parser's notice hook, ``make_parser(spec, notice)``: each
  adapter lists the documented fields of what it parses in a :class:`FieldWatch` (its
  ``FIELDS``), whose docstring says why a hook and what it costs per frame (one ``len``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

import orjson

from collector.common.config import get_int, get_str
from collector.common.errors import (
    BAD_VALUE,
    FOREIGN_SYMBOL,
    MALFORMED,
    MISSING_FIELD,
    UNKNOWN_TYPE,
    ConfigError,
    UnexpectedMessage,
    clean_name,
)
from collector.exchanges.listing import ParsedListings
from collector.model import BookUpdate, L3Order, L3Snapshot, PriceLevel, Record

# Plausible exchange times: nothing any of our exchanges sends predates 2009 (Bitcoin) or
# should postdate 2100; outside that it is a placeholder, a unit mix-up or a forgery.
MIN_TIME_MS = 1_230_768_000_000  # 2009-01-01T00:00:00Z
MAX_TIME_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
MIN_TIME_US = MIN_TIME_MS * 1000
MAX_TIME_US = MAX_TIME_MS * 1000
# Ids fit a signed 64-bit column (what pandas, polars and Athena read them as).
MAX_ID = 2**63
# The longest decimal string we accept (Binance sends 8 decimals, the recordings at most 20
# characters): bounds memory and the CSV, and keeps a forged value from being huge.
MAX_DECIMAL_CHARS = 40


@dataclass(frozen=True)
class Credentials:
    """An exchange API key. ``repr`` never shows the secret or the passphrase."""

    key: str
    secret: str = field(repr=False)
    passphrase: str = field(repr=False)


# --- per-exchange options -------------------------------------------------------------------

OptionValue = int | str
# Where an option is read: the exchange's own [exchanges.<id>] table, or (kept for the config
# keys of before the registry, Binance's) the shared [collector] table, which every collector
# checks, whatever its exchange, as it always did.
OptionTable = Literal["exchange", "collector"]


@dataclass(frozen=True)
class IntOption:
    """An integer option an adapter declares: its key, default and validation."""

    key: str
    default: int
    table: OptionTable = "exchange"
    choices: tuple[int, ...] | None = None
    min_value: int | None = None
    max_value: int | None = None

    def read(self, table: Mapping[str, Any], where: str) -> int:
        """The value in a config table (the default when absent); ConfigError naming it."""
        return get_int(
            table,
            self.key,
            self.default,
            where=where,
            choices=self.choices,
            min_value=self.min_value,
            max_value=self.max_value,
        )

    def of(self, spec: StreamSpec) -> int:
        """This option's value for a stream (the default when the spec has none)."""
        value = spec.options.get(self.key, self.default)
        if type(value) is not int:
            raise TypeError(f"option {self.key} = {value!r} is not an integer")
        return value


@dataclass(frozen=True)
class StrOption:
    """A string option an adapter declares, one of ``choices``."""

    key: str
    default: str
    choices: tuple[str, ...]
    table: OptionTable = "exchange"

    def read(self, table: Mapping[str, Any], where: str) -> str:
        """The value in a config table (the default when absent); ConfigError naming it."""
        value = get_str(table, self.key, self.default, where=where)
        if value not in self.choices:
            *rest, last = self.choices
            allowed = f"{', '.join(rest)} or {last}" if rest else last
            raise ConfigError(f"{where}: {self.key} = {value!r} must be {allowed}")
        return value

    def of(self, spec: StreamSpec) -> str:
        """This option's value for a stream (the default when the spec has none)."""
        value = spec.options.get(self.key, self.default)
        if type(value) is not str:
            raise TypeError(f"option {self.key} = {value!r} is not a string")
        return value


Option = IntOption | StrOption


@dataclass(frozen=True)
class StreamSpec:
    """What one collector subscribes to, in the exchange's own terms.

    ``options``: the values of the options the adapter declares (``OPTIONS``), by key; an
    option that is absent has its default.
    """

    symbol: str
    data_type: str
    options: Mapping[str, OptionValue] = field(default_factory=dict)
    credentials: Credentials | None = None


def credentials_from(
    values: Mapping[str, str], names: tuple[str, str, str], label: str
) -> tuple[str, str, str] | None:
    """(key, secret, passphrase) from the values of the variables ``names``, or None when
    none is set. All or none; no whitespace or control character (a trailing newline from a
    sourced ``.cred`` file). Messages name the variables, never a value."""
    got = [values.get(n, "") for n in names]
    if not any(got):
        return None
    missing = [n for n, v in zip(names, got, strict=True) if not v]
    if missing:
        raise ConfigError(f"incomplete {label} credentials: {', '.join(missing)} not set")
    for name, value in zip(names, got, strict=True):
        if not value.isprintable() or value != value.strip():
            raise ConfigError(f"{name} contains whitespace or control characters")
    return got[0], got[1], got[2]


# --- what QA compares an l3 file with ------------------------------------------------------


@dataclass(frozen=True)
class L2View:
    """The exchange's own aggregated book at one moment (a REST body the collector recorded
    beside an l3 stream): price levels best first, and where the moment sits among the l3
    rows: after every row whose ``sequence`` is <= ``sequence``, or, for an exchange without
    sequence numbers, whose ``timestamp`` (ms) is <= ``time_ms``."""

    bids: tuple[PriceLevel, ...]
    asks: tuple[PriceLevel, ...]
    sequence: int | None = None
    time_ms: int | None = None


Parse = Callable[[str | bytes, int], list[Record]]
# A stream parser's hook for a frame of a known type with fields the adapter does not know:
# (detail ``"trade.X,trade.Y"``, the frame as the parser got it). See FieldWatch.
Notice = Callable[[str, str | bytes], None]


class ExchangeAdapter(Protocol):
    """Everything generic code may ask of one exchange: module-level constants and pure
    functions. Optional capabilities are explicit members that are ``None`` (or ``False``)
    where the exchange has none; generic code reads them as plain attributes, never probes.
    The module docstring above is the checklist for adding an exchange.
    """

    # Read-only members (properties here, plain module attributes in an adapter).

    # identity, grammar, endpoints
    @property
    def EXCHANGE(self) -> str: ...  # the id used in paths, program names, config tables
    @property
    def SYMBOL_PATTERN(self) -> re.Pattern[str]: ...  # exchange-native symbols accepted
    @property
    def DATA_TYPES(self) -> tuple[str, ...]: ...  # data types it can collect
    @property
    def DEFAULT_WS_URL(self) -> str: ...  # production endpoints ([exchanges.<id>] overrides)
    @property
    def DEFAULT_REST_URL(self) -> str: ...

    # settings: options (their keys join the config schema; values reach StreamSpec.options)
    # and credentials (settings.py reads the variables named here; the adapter validates)
    @property
    def OPTIONS(self) -> tuple[Option, ...]: ...
    @property
    def CREDENTIAL_ENV(self) -> tuple[str, str, str] | None: ...  # key, secret, passphrase
    @property
    def read_credentials(self) -> Callable[[Mapping[str, str]], Credentials | None] | None: ...
    @property
    def SEND_SECRET_FIELDS(self) -> tuple[str, ...]: ...  # credentials in our send frames

    # sequencing and book sync
    @property
    def TRADE_IDS_CONTIGUOUS(self) -> bool: ...  # per-symbol ids step by one (else global)
    @property
    def BOOK_SNAPSHOT_FROM_REST(self) -> bool: ...  # book: REST snapshot + diffs
    @property
    def L3_SNAPSHOT_FROM_REST(self) -> bool: ...  # l3: REST snapshot (else in-stream)
    @property
    def L3_ALIGN(self) -> str: ...  # l3 snapshot alignment: "sequence" | "time"
    @property
    def L3_CHECKSUM(self) -> bool: ...  # l3: the stream carries book checksums to verify

    def build_ws_url(self, base_url: str, spec: StreamSpec) -> str: ...

    def build_subscribe(self, spec: StreamSpec, now_s: float) -> list[str]: ...

    def make_parser(self, spec: StreamSpec, notice: Notice | None = None) -> Parse:
        """The parser of one stream: it knows the stream's symbol and data type, and raises
        ``UnexpectedMessage(reason="foreign_symbol")`` for a frame of another symbol. A frame
        of a known type with fields it does not know is parsed and told to ``notice``
        (:class:`FieldWatch`)."""
        ...

    # optional capabilities (None where the exchange has none)
    @property
    def parse(self) -> Parse | None: ...  # any frame, stateless (symbols by SYMBOL_PATTERN)
    @property
    def options_from_subscribe(self) -> Callable[[str], dict[str, OptionValue]] | None:
        """One of our own subscribe frames (a ``send`` line of a raw file) → the values of
        the options it was built with, where they decide what the stream's parser accepts
        (QA replays a raw file with the options its collector had, not today's config)."""
        ...

    @property
    def check_spec(self) -> Callable[[StreamSpec], None] | None: ...  # refuse at start-up
    @property
    def build_snapshot_url(self) -> Callable[[str, StreamSpec, int], str] | None: ...
    @property
    def snapshot_weight(self) -> Callable[[int], int] | None: ...  # REST request weight
    @property
    def parse_snapshot(self) -> Callable[[str | bytes, str], BookUpdate] | None: ...
    @property
    def build_l3_snapshot_url(self) -> Callable[[str, StreamSpec], str] | None: ...
    @property
    def parse_l3_snapshot(self) -> Callable[[str | bytes, str, int], L3Snapshot] | None: ...

    # QA's L3 cross-check: the exchange's own view of its book, recorded in raw
    @property
    def build_l2_view_url(self) -> Callable[[str, StreamSpec], str] | None: ...
    @property
    def parse_l2_view(self) -> Callable[[str, str | bytes], L2View | None] | None:
        """(url, body) of a recorded REST response → the view, or None when the URL is not
        one of ``build_l2_view_url``; raises UnexpectedMessage for a body it cannot read."""
        ...

    @property
    def parse_checksum(self) -> Callable[[str | bytes], int | None] | None:
        """A stream frame → the book checksum it carries, or None (cheap: QA asks it of
        every frame of an l3 file). Set together with ``book_checksum``."""
        ...

    @property
    def book_checksum(self) -> Callable[[Iterable[L3Order]], int] | None:
        """The exchange's checksum of a book given as its resting orders (any order)."""
        ...

    # listings (the security master's sources; None where not polled yet)
    @property
    def build_listings_url(self) -> Callable[[str], str] | None: ...  # from the REST base
    @property
    def parse_listing_body(self) -> Callable[[str | bytes], ParsedListings] | None:
        """A listings body → listings screened against the grammar, and those refused."""
        ...

    # trade backfill from REST (ops.dataset: the ids every host missed); None where the
    # exchange cannot serve an id range
    @property
    def BACKFILL_PAGE_SIZE(self) -> int: ...  # trades per page at most (0: no backfill)
    @property
    def BACKFILL_ASCENDING(self) -> bool: ...  # a page starts at the lowest id (else highest)
    @property
    def BACKFILL_WEIGHT_PER_MIN(self) -> int: ...  # the exchange's REST weight limit per IP
    @property
    def build_trades_backfill_url(self) -> Callable[[str, StreamSpec, int, int], str] | None: ...
    @property
    def backfill_weight(self) -> Callable[[StreamSpec], int] | None: ...  # weight of one page
    @property
    def parse_backfill_trades(
        self,
    ) -> Callable[[str | bytes, StreamSpec], Sequence[Record]] | None: ...  # Trade records

    # placement: cloud regions whose addresses the exchange refuses, as region-name prefixes
    # ("us-": Binance.com answers HTTP 451 to US addresses); () where none are known.
    # ``[exchanges.<id>] regions`` overrides it.
    @property
    def EXCLUDED_REGION_PREFIXES(self) -> tuple[str, ...]: ...
    # websocket handshake statuses no retry can change (the venue refuses this host's
    # location), with what they mean: the collector stops with exit 2 and an alert naming the
    # host's region instead of reconnecting forever. Empty where none are known.
    @property
    def FATAL_HANDSHAKE_STATUS(self) -> Mapping[int, str]: ...


# --- errors -------------------------------------------------------------------------------


def excerpt(raw: str | bytes) -> str:
    """The start of a frame for an error (a slice first: a frame can be megabytes)."""
    head = raw[:200]
    return head.decode("utf-8", "replace") if isinstance(head, bytes) else head


def text(value: object, limit: int = 200) -> str:
    """Any JSON value as a short human text (control details, error messages).

    Never raises: ``str()`` of a deeply nested list raises RecursionError, so containers go
    through orjson (which refuses depth > 255 with an error instead).
    """
    if value is None or isinstance(value, str | int | float):
        return str(value)[:limit]
    try:
        return orjson.dumps(value).decode()[:limit]
    except (orjson.JSONEncodeError, TypeError):
        return "<unprintable>"


def bad_value(field: str, value: object, raw: str | bytes, why: str = "") -> UnexpectedMessage:
    """``field`` is present but of the wrong JSON type or fails the boundary grammar."""
    detail = f" ({why})" if why else ""
    return UnexpectedMessage(
        f"bad {field}: {text(value, 60)!r}{detail}",
        excerpt=excerpt(raw),
        reason=BAD_VALUE,
        field=field,
    )


def missing_field(field: str, raw: str | bytes, kind: object = "") -> UnexpectedMessage:
    what = f"{text(kind, 40)} frame" if kind else "frame"
    return UnexpectedMessage(
        f"{what} without {field}",
        excerpt=excerpt(raw),
        reason=MISSING_FIELD,
        field=field,
        kind=kind,
    )


def unknown_type(what: str, raw: str | bytes, kind: object = None) -> UnexpectedMessage:
    """A message type the adapter does not know; ``kind`` is its name as the frame gives it
    (cleaned and bounded by ``clean_name``: it becomes a counter key and alert text)."""
    return UnexpectedMessage(what, excerpt=excerpt(raw), reason=UNKNOWN_TYPE, kind=kind)


def malformed(what: str, raw: str | bytes) -> UnexpectedMessage:
    return UnexpectedMessage(what, excerpt=excerpt(raw), reason=MALFORMED)


def foreign_symbol(field: str, value: object, expected: str, raw: str | bytes) -> UnexpectedMessage:
    return UnexpectedMessage(
        f"{field} {text(value, 60)!r} is not this stream's ({expected})",
        excerpt=excerpt(raw),
        reason=FOREIGN_SYMBOL,
    )


def with_context(exc: UnexpectedMessage, context: str) -> UnexpectedMessage:
    """The same error with ``context`` (e.g. "malformed coinbase open frame") in front."""
    return UnexpectedMessage(
        f"{context}: {exc}",
        excerpt=exc.excerpt,
        reason=exc.reason,
        field=exc.field,
        kind=exc.kind,
    )


# --- fields the adapter does not know -----------------------------------------------------

# Key tuples whose verdict a FieldWatch remembers (past that, such frames are compared afresh).
MAX_SHAPES = 256
# Unknown fields named in one notice (the rest are counted as ``<type>.+N``).
MAX_NOTICE_FIELDS = 8


class FieldWatch:
    """The documented fields of each message type an adapter parses, and what a frame carries
    beyond them: the *unexpected field* of the frame kinds (``errors.FRAME_KINDS``).

    How an adapter reports it: a frame of a known type with a field the adapter does not know
    is still parsed (its records are returned and its rows written), and the stream's parser
    calls the :data:`Notice` hook it was made with (``make_parser(spec, notice)``) with the
    detail (``"trade.X,trade.Y"``) and the frame. The processor passes its own hook, which
    counts the frame and alerts once per distinct ``<type>.<field>``. A hook rather than a
    notice record keeps the records what they always were (every consumer of ``parse`` sees
    the same records), rather than an exception keeps the rows, and it costs nothing on a
    frame without news: the parser calls it only when there is something to tell.

    Cost: per frame, the adapter compares ``len(d)`` with the usual number of fields of the
    type (``usual``, inline: about 20 ns on Binance's trade fast path, which it leaves when
    the count differs, and well under 100 ns elsewhere: within the noise of a parse). Only a
    frame with another number of fields has its keys compared with the documented set
    (:meth:`check`), once per distinct key tuple (the verdict is remembered, at most
    :data:`MAX_SHAPES` tuples), so an exchange that adds a field to every frame costs one
    tuple and one lookup per frame until the adapter is updated. The blind spot, accepted for
    that price: a new field that replaces, in the same frames, a documented field the parser
    does not read (a field it reads would be a ``missing_field`` error).

    Args:
        fields: type → every documented field (optional ones included).
        usual: type → the number of fields its frames usually have (default: all of them).
    """

    def __init__(
        self, fields: Mapping[str, Iterable[str]], usual: Mapping[str, int] | None = None
    ) -> None:
        self.fields = {kind: frozenset(names) for kind, names in fields.items()}
        self.usual = {kind: len(names) for kind, names in self.fields.items()}
        self.usual.update(usual or {})
        self._seen: dict[tuple[str, tuple[str, ...]], str] = {}

    def check(self, kind: str, d: Mapping[str, object]) -> str:
        """``""`` when ``d`` (a frame of type ``kind``) has its usual number of fields or only
        documented ones, or ``kind`` is not watched; else the notice detail naming the others
        (see :meth:`unknown`)."""
        usual = self.usual.get(kind)
        if usual is None or len(d) == usual:
            return ""
        return self.unknown(kind, d)

    def unknown(self, kind: str, d: Mapping[str, object]) -> str:
        """The notice detail for the fields of ``d`` that ``kind`` does not document:
        ``"kind.f1,kind.f2"`` (names cleaned: no comma, dot or newline can pass), ``""`` when
        there are none."""
        keys = tuple(d)
        shape = (kind, keys)
        seen = self._seen.get(shape)
        if seen is not None:
            return seen
        known = self.fields[kind]
        extra = sorted({clean_name(k) for k in keys if k not in known})
        detail = notice_detail(kind, extra)
        if len(self._seen) < MAX_SHAPES:
            self._seen[shape] = detail
        return detail


def notice_detail(kind: str, names: Sequence[str], total: int | None = None) -> str:
    """``"kind.a,kind.b"`` for the unexpected field names (at most :data:`MAX_NOTICE_FIELDS`;
    the rest of ``total``, default ``len(names)``, counted as ``kind.+N``); ``""`` for none."""
    k = clean_name(kind)
    parts = [f"{k}.{clean_name(name)}" for name in names[:MAX_NOTICE_FIELDS]]
    total = len(names) if total is None else total
    if total > len(parts):
        parts.append(f"{k}.+{total - len(parts)}")
    return ",".join(parts)


def tell(notice: Notice, raw: str | bytes, detail: str, more: str = "") -> None:
    """Call the parser's notice hook when ``detail`` or ``more`` names unexpected fields
    (the common case, neither, costs one test)."""
    if detail or more:
        notice(f"{detail},{more}" if detail and more else detail or more, raw)


# --- frames -------------------------------------------------------------------------------


def load_object(raw: str | bytes) -> dict[str, Any]:
    """A frame that must be one JSON object; anything else is an UnexpectedMessage.

    orjson refuses invalid UTF-8 and nesting deeper than 1024 (no RecursionError), and is
    linear in the frame's size, which the websocket's ``max_message_size`` bounds.
    """
    try:
        msg = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise malformed(f"frame is not JSON: {exc}", raw) from exc
    if type(msg) is not dict:
        raise malformed("frame is not an object", raw)
    return msg


def get(d: dict[str, Any], key: str, raw: str | bytes, kind: object = "") -> Any:
    """``d[key]``, or ``missing_field`` naming it."""
    try:
        return d[key]
    except KeyError:
        raise missing_field(key, raw, kind) from None


# --- values -------------------------------------------------------------------------------

# `[0-9]`, not `\d` (which also matches other scripts' digits); fullmatch, never `$` (which
# also matches before a trailing newline). The lookahead bounds the length.
_DECIMAL = rf"(?=[0-9.]{{1,{MAX_DECIMAL_CHARS}}}\Z)[0-9]+(?:\.[0-9]+)?"
is_decimal = re.compile(_DECIMAL).fullmatch
"""A decimal >= 0 (a book level's quantity, where zero deletes)."""
is_positive = re.compile(r"(?=[0-9.]*[1-9])" + _DECIMAL).fullmatch
"""A decimal > 0 (prices; trade, order and snapshot quantities)."""


def positive(value: object, field: str, raw: str | bytes) -> str:
    """A decimal string > 0."""
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    if is_positive(value) is None:
        raise bad_value(field, value, raw, "not a positive decimal")
    return value


def decimal(value: object, field: str, raw: str | bytes) -> str:
    """A decimal string >= 0."""
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    if is_decimal(value) is None:
        raise bad_value(field, value, raw, "not a decimal")
    return value


def id_int(value: object, field: str, raw: str | bytes) -> int:
    """An id the exchange sends as a JSON integer: ``0 <= id < 2**63``."""
    if type(value) is not int:
        raise bad_value(field, value, raw, "not an integer")
    if not 0 <= value < MAX_ID:
        raise bad_value(field, value, raw, "out of range")
    return value


_DIGITS = re.compile(r"[0-9]{1,19}").fullmatch


def id_digits(value: object, field: str, raw: str | bytes) -> str:
    """An id the exchange sends as a string of digits (Bitstamp ``id_str``): ``< 2**63``."""
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    if _DIGITS(value) is None or int(value) >= MAX_ID:
        raise bad_value(field, value, raw, "not a decimal id")
    return value


def time_ms(value: object, field: str, raw: str | bytes) -> int:
    """Epoch milliseconds sent as a JSON integer, within the plausible range."""
    if type(value) is not int:
        raise bad_value(field, value, raw, "not an integer")
    if not MIN_TIME_MS <= value < MAX_TIME_MS:
        raise bad_value(field, value, raw, "not a plausible epoch time in ms")
    return value


def time_us_digits(value: object, field: str, raw: str | bytes, unit_us: int = 1) -> int:
    """Epoch time sent as a string of digits (Bitstamp), in µs; ``unit_us`` 1_000_000 reads
    whole seconds."""
    if type(value) is not str or _DIGITS(value) is None:
        raise bad_value(field, value, raw, "not a string of digits")
    us = int(value) * unit_us
    if not MIN_TIME_US <= us < MAX_TIME_US:
        raise bad_value(field, value, raw, "not a plausible epoch time")
    return us


def iso_to_ms(value: str) -> int:
    """Exact epoch milliseconds of an ISO-8601 UTC time, fraction truncated (not rounded).

    Strict: ``YYYY-MM-DDTHH:MM:SS[.f{1,9}]`` then ``Z`` or ``+00:00``, ASCII digits only, a
    real calendar time (month 13 or second 60 raise ValueError). Parses the digits directly:
    ``datetime.fromisoformat`` would round nanoseconds away.
    """
    m = _ISO.fullmatch(value)
    if m is None:
        raise ValueError(f"not an ISO-8601 UTC time: {value[:60]!r}")
    y, mo, d, h, mi, s, frac = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    seconds = (dt - _EPOCH) // _SECOND
    return seconds * 1000 + int(((frac or "") + "000")[:3])


_ISO = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:Z|\+00:00)"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)


def iso_time_ms(value: object, field: str, raw: str | bytes) -> int:
    """An ISO-8601 UTC time string → epoch ms, strict and within the plausible range."""
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    try:
        ms = iso_to_ms(value)
    except ValueError:
        raise bad_value(field, value, raw, "not an ISO-8601 UTC time") from None
    if not MIN_TIME_MS <= ms < MAX_TIME_MS:
        raise bad_value(field, value, raw, "not a plausible time")
    return ms


def symbol_of(value: object, pattern: re.Pattern[str], field: str, raw: str | bytes) -> str:
    """A symbol the frame names, checked against the adapter's grammar."""
    if type(value) is not str:
        raise bad_value(field, value, raw, "not a string")
    if pattern.fullmatch(value) is None:
        raise bad_value(field, value, raw, "not a symbol of this exchange")
    return value


def check_levels(
    rows: object, field: str, raw: str | bytes, *, zero_ok: bool
) -> list[tuple[str, str]]:
    """``[[price, qty, ...], ...]`` → ``[(price, qty), ...]`` (extra columns dropped).

    Prices are > 0; quantities are > 0, or >= 0 with ``zero_ok`` (diffs, where zero deletes).
    """
    if type(rows) is not list:
        raise bad_value(field, rows, raw, "not a list of levels")
    qty_ok = is_decimal if zero_ok else is_positive
    out = []
    for r in rows:
        if type(r) is not list or len(r) < 2:
            raise bad_value(field, r, raw, "not a [price, quantity] level")
        p, q = r[0], r[1]
        if type(p) is not str or is_positive(p) is None:
            raise bad_value(field, p, raw, "price is not a positive decimal")
        if type(q) is not str or qty_ok(q) is None:
            raise bad_value(field, q, raw, "quantity is not a decimal")
        out.append((p, q))
    return out


def check_l3_orders(
    msg: dict[str, Any],
    raw: str | bytes,
    order_id: Callable[[object, str, str | bytes], str],
    shape: str,
) -> list[L3Order]:
    """An L3 snapshot's ``bids`` and ``asks`` rows ``[price, amount, order_id, ...]`` →
    ``(order_id, side, price, amount)`` orders, every value checked (``shape`` names the row
    in errors, e.g. ``[price, size, order_id]``)."""
    orders: list[L3Order] = []
    for key, side in (("bids", "B"), ("asks", "A")):
        rows = get(msg, key, raw)
        if type(rows) is not list:
            raise bad_value(key, rows, raw, "not a list")
        for r in rows:
            if type(r) is not list or len(r) < 3:
                raise bad_value(key, r, raw, f"not {shape}")
            oid = order_id(r[2], key, raw)
            orders.append((oid, side, positive(r[0], key, raw), positive(r[1], key, raw)))
    return orders


def levels(rows: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """``[[price, qty, ...], ...]`` → ``[(price, qty), ...]`` (extra columns dropped).

    Unchecked: adapters use :func:`check_levels` on exchange input.
    """
    return [(r[0], r[1]) for r in rows]
