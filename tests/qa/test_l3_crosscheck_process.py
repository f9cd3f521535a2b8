"""The L3 cross-check on files a real collector wrote: the collector records the exchange's
own L2 view (Coinbase ``book?level=2``) beside its ``full`` stream, QA compares."""

from __future__ import annotations

import json

from ops.replay import ReplayThread, write_capture
from qa.l3check import crosscheck, read_raw, read_rows
from tests.collector.harness import collector, write_config
from tests.collector.test_process_l3 import (
    COINBASE_FRAMES,
    COINBASE_SNAPSHOT,
    GOOD_ENV,
    TEST_KEY,
    T,
)

# The book after COINBASE_FRAMES, aggregated per price as GET /products/<id>/book?level=2.
LEVEL2 = {
    "sequence": 110,
    "bids": [["99.00", "3", 1]],
    "asks": [["100.10", "0.8", 1], ["100.30", "1", 1], ["101.00", "0.25", 1]],
}


def capture(path, level2):
    events: list[dict[str, object]] = [
        {"t": "http", "conn": "rest", "ts": 1.0, "status": 200, "data": {**COINBASE_SNAPSHOT,
         "time": T}, "url": "https://api.exchange.coinbase.com/products/BTC-USD/book?level=3"},
        {"t": "http", "conn": "rest", "ts": 1.0, "status": 200, "data": level2,
         "url": "https://api.exchange.coinbase.com/products/BTC-USD/book?level=2"},
        {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://ws-feed.exchange.coinbase.com"},
    ]  # fmt: skip
    events += [{"t": "recv", "conn": "c", "ts": 1.0 + i / 1000, "data": f}
               for i, f in enumerate(COINBASE_FRAMES)]  # fmt: skip
    return write_capture(path, events, exchange="coinbase")


def run(tmp_path, level2):
    with ReplayThread([capture(tmp_path / "cb.jsonl.gz", level2)], coinbase_auth=TEST_KEY) as r:
        cfg = write_config(tmp_path / "c.toml", "coinbase", r, "l2_view_interval_s = 0.2")
        with collector(tmp_path, "coinbase", "BTC-USD", "l3", cfg, env=GOOD_ENV) as c:
            c.wait_for(lambda s: s.get("rows", 0) >= 10)
            c.wait_for(lambda s: r.stats.http_requests["/products/BTC-USD/book"] >= 4)
            assert c.stop() == 0
    (parsed,) = c.files("parsed")
    (raw,) = c.files("raw")
    return c, crosscheck("coinbase", read_rows(parsed), read_raw(raw))


def test_l2_views_are_recorded_and_agree_with_the_rebuilt_book(tmp_path):
    c, result = run(tmp_path, LEVEL2)

    views = [e for e in c.raw_events() if e["t"] == "http" and e["conn"] == "l2view"]
    assert len(views) >= 2
    assert views[0]["url"].endswith("/products/BTC-USD/book?level=2")
    assert result.moments == len(views)
    assert (result.agree, result.unexplained) == (result.moments, 0)
    assert result.fraction == 1.0


def test_a_view_that_disagrees_is_reported(tmp_path):
    wrong = json.loads(json.dumps(LEVEL2))
    wrong["asks"][0][1] = "0.9"

    _, result = run(tmp_path, wrong)

    assert result.moments >= 2
    assert result.agree == 0
    assert result.unexplained == result.moments
