"""What shapes a run's rows, recorded first in its raw file, and read back by a rebuild.

A collector run writes, as its first raw line, the settings its rows depend on (besides the
frames): the book depth and the values of its adapter's options (Binance's trade stream and
depth speed decide which frames its parser accepts). Trade streams carry them in their
``resume`` marker (always a run's first line), book and l3 streams in a ``start`` marker:

    {"t":"start","conn":"","ts":1712345678.123456,"run":{"book_depth":5,"options":{...}}}

``python -m collector rebuild`` takes them from there, so a rebuild gives the live run's rows
even after the config file changed; a run recorded before this marker existed takes them
from the config file. Standard library only (and the settings it rebuilds).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from collector.common.config import get_int
from collector.common.errors import ConfigError
from collector.exchanges import ADAPTERS
from collector.exchanges.base import OptionValue
from collector.model import DEFAULT_BOOK_DEPTH, MAX_BOOK_DEPTH
from collector.settings import CollectorSettings

# The raw marker that opens a book or l3 run (a trade run opens with its `resume` marker).
START = "start"
# The field of `start` and `resume` markers that holds the run's settings.
RUN_FIELD = "run"


def run_facts(settings: CollectorSettings) -> dict[str, object]:
    """The settings of a run that shape its rows (JSON-ready, deterministic order)."""
    return {
        "book_depth": settings.book_depth,
        "options": {k: settings.options[k] for k in sorted(settings.options)},
    }


def with_facts(settings: CollectorSettings, facts: object, where: str) -> CollectorSettings:
    """``settings`` with a recorded run's book depth and options (checked as the config file
    is: a value no collector could have run with raises ConfigError naming ``where``)."""
    if not isinstance(facts, Mapping) or set(facts) != {"book_depth", "options"}:
        raise ConfigError(f"{where}: the run's settings are not readable: {str(facts)[:200]}")
    depth = get_int(
        facts,
        "book_depth",
        DEFAULT_BOOK_DEPTH,
        where=where,
        min_value=1,
        max_value=MAX_BOOK_DEPTH,
    )
    given = facts["options"]
    if not isinstance(given, Mapping):
        raise ConfigError(f"{where}: the run's options are not a table: {str(given)[:200]}")
    declared = {o.key: o for o in ADAPTERS[settings.exchange].OPTIONS}
    unknown = sorted(str(k) for k in given if k not in declared)
    if unknown:
        raise ConfigError(f"{where}: unknown option(s) of the run: {', '.join(unknown)[:200]}")
    options: dict[str, OptionValue] = {
        key: option.read(given, where) for key, option in declared.items() if key in given
    }
    return dataclasses.replace(settings, book_depth=depth, options=options)
