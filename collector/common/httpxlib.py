"""httpx without its command-line client: ``from collector.common.httpxlib import httpx``.

httpx's package imports its command-line client (``httpx._main``) whenever click and pygments
are importable, and they are in our virtualenv (Flask, for moto, and pytest bring them). No
process of ours runs that client, yet every one that imported httpx paid for it: in a
collector that fetches REST snapshots, 56M of its ~1,140M instructions to import everything
(about 13 ms of each start) and 2.5 MB of its resident memory (tests/bench/bench_fleet.py: a
Binance book stream held 40.5 MB, a trade stream 34.2). A ``None`` entry in ``sys.modules``
makes that one import fail, and httpx then defines its stub ``main`` (what it does where click
is not installed); the library itself is unchanged.

Every module of ours imports httpx through this one (``tests/collector/test_httpxlib.py``).
"""

from __future__ import annotations

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
