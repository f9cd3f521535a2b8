"""The package's boundaries: an independent peer that imports nothing of ours; venue options
are checked; an unprefixed websocket path goes to the venue its path names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import trio
from structlog.testing import capture_logs
from trio_websocket import open_websocket_url

from ops.replay import Capture, ReplayServer, write_capture
from tests.ops.replay.helpers import ROOT, TEST_KEY, serving

ISOLATED = """
import pkgutil, sys
for name in ("collector", "secmaster", "qa"):
    sys.modules[name] = None  # any import of them raises ImportError
import ops.replay
for module in pkgutil.walk_packages(ops.replay.__path__, "ops.replay."):
    __import__(module.name)
others = sorted(m for m in sys.modules if m.startswith("ops.") and not m.startswith("ops.replay"))
assert not others, others
ops.replay.main(["--help"])
"""


def test_replay_imports_nothing_of_the_collector() -> None:
    """With collector, secmaster and qa unimportable, every replay module loads and --help
    runs."""
    done = subprocess.run(
        [sys.executable, "-c", ISOLATED], cwd=ROOT, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m ops.replay")


def test_venue_options_are_checked(captures: dict[str, Capture]) -> None:
    """A keyword no venue declares, or a value of the wrong type, is a TypeError."""
    ReplayServer([captures["coinbase"]], coinbase_auth=TEST_KEY)

    with pytest.raises(TypeError, match="unexpected keyword argument 'no_such_option'"):
        ReplayServer([captures["coinbase"]], no_such_option=1)
    with pytest.raises(TypeError, match="coinbase_auth must be a CoinbaseTestKey"):
        ReplayServer([captures["coinbase"]], coinbase_auth="key:secret:pass")


async def test_unprefixed_websocket_paths_route_by_venue_hints(
    captures: dict[str, Capture], tmp_path: Path
) -> None:
    """With four venues on one port: /ws/2 is Bitfinex, /stream and /ws/... Binance, any
    other path the first venue of the root (Coinbase)."""
    events = [{"t": "connect", "conn": "c1", "ts": 0.0, "addr": "wss://api-pub.bitfinex.com/ws/2"}]
    bitfinex = write_capture(tmp_path / "bitfinex.jsonl.gz", events)
    served = [captures["bitstamp"], bitfinex, captures["coinbase"], captures["binance"]]
    paths = ["/ws/2", "/stream", "/ws/lrcbtc@aggTrade", "/", "/other"]

    with trio.fail_after(10), capture_logs() as logs:
        async with serving(*served) as server:
            for path in paths:
                async with open_websocket_url(server.ws_url + path):
                    pass

    routed = {e["path"]: e["exchange"] for e in logs if e["event"] == "replay.connection"}
    assert routed == {
        "/ws/2": "bitfinex",
        "/stream": "binance",
        "/ws/lrcbtc@aggTrade": "binance",
        "/": "coinbase",
        "/other": "coinbase",
    }
