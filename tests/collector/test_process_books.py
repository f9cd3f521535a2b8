"""Book collectors end to end against the replay server, checked by a simple reference.

The reference rebuilds the book from the collector's own raw file (every frame and REST
snapshot it received, in order) with plain dicts, ``Decimal`` and ``sorted()``, following
the documented procedures, and must give the same top-N rows at every output.
"""

from __future__ import annotations

import base64
import gzip
import json
import time
from decimal import Decimal

from ops.replay import CoinbaseTestKey, ReplayThread
from tests.collector.harness import collector, write_config
from tests.conftest import CAPTURES, read_events

DEPTH = 5
BINANCE_SYMBOLS = ("NKNUSDT", "BLZETH", "LRCBTC", "RUNEEUR")
COINBASE_PRODUCTS = (
    "SKL-USD",
    "SKL-BTC",
    "BAND-GBP",
    "NMR-EUR",
    "BAND-BTC",
    "YFI-BTC",
    "DASH-BTC",
    "NU-GBP",
    "CRV-EUR",
    "SKL-GBP",
)


class RefBook:
    """Deliberately simple: dicts keyed by Decimal, a full sort for every top-N."""

    def __init__(self, bids, asks):
        self.sides = {"B": {}, "A": {}}
        self.apply(bids, asks)

    def apply(self, bids, asks):
        for side, levels in (("B", bids), ("A", asks)):
            for price, qty in levels:
                if Decimal(qty) == 0:
                    self.sides[side].pop(Decimal(price), None)
                else:
                    self.sides[side][Decimal(price)] = (price, qty)

    def top(self):
        bids = sorted(self.sides["B"].items(), reverse=True)[:DEPTH]
        asks = sorted(self.sides["A"].items())[:DEPTH]
        return [v for _, v in bids], [v for _, v in asks]


def rows_of(top, ts_ms, symbol, ts):
    us = str(int(ts * 1_000_000))
    bids, asks = top
    return [[str(ts_ms), symbol, "B", p, q, str(i), us] for i, (p, q) in enumerate(bids, 1)] + [
        [str(ts_ms), symbol, "A", p, q, str(i), us] for i, (p, q) in enumerate(asks, 1)
    ]


def reference_binance(raw, symbol):
    """Binance's documented procedure (exchanges.md §1) over the raw events."""
    out, book, last, buffer = [], None, None, []
    for ev in raw:
        if ev["t"] == "disconnect":
            book, buffer = None, []
        elif ev["t"] == "http":
            snap = json.loads(ev["data"])
            if book is not None or not buffer or snap["lastUpdateId"] < buffer[0]["U"]:
                continue  # unsolicited or stale: the collector asks again
            last = snap["lastUpdateId"]
            book = RefBook(snap["bids"], snap["asks"])
            ts_ms = 0
            kept = [d for d in buffer if d["u"] > last]
            buffer = []
            for i, d in enumerate(kept):
                if d["U"] > last + 1:
                    book, buffer = None, kept[i:]
                    break
                book.apply(d["b"], d["a"])
                last, ts_ms = d["u"], d["E"]
            if book is not None:
                out += rows_of(book.top(), ts_ms or int(ev["ts"] * 1000), symbol, ev["ts"])
        elif ev["t"] == "recv":
            d = json.loads(ev["data"]).get("data", {})
            if d.get("e") != "depthUpdate":
                continue
            if book is None:
                buffer.append(d)
            elif d["u"] <= last:
                continue
            elif d["U"] > last + 1:
                book, buffer = None, [d]
            else:
                before = book.top()
                book.apply(d["b"], d["a"])
                last = d["u"]
                if book.top() != before:
                    out += rows_of(book.top(), d["E"], symbol, ev["ts"])
    return out


def reference_coinbase(raw, product):
    from collector.exchanges.base import iso_to_ms

    out, book = [], None
    for ev in raw:
        if ev["t"] == "disconnect":
            book = None
        elif ev["t"] == "recv":
            m = json.loads(ev["data"])
            if m.get("product_id") != product:
                continue
            if m["type"] == "snapshot":
                book = RefBook(m["bids"], m["asks"])
                out += rows_of(book.top(), int(ev["ts"] * 1000), product, ev["ts"])
            elif m["type"] == "l2update" and book is not None:
                before = book.top()
                book.apply(
                    [(p, s) for side, p, s in m["changes"] if side == "buy"],
                    [(p, s) for side, p, s in m["changes"] if side == "sell"],
                )
                if book.top() != before:
                    out += rows_of(book.top(), iso_to_ms(m["time"]), product, ev["ts"])
    return out


def recv_count(exchange, key):
    n = 0
    for ev in read_events(CAPTURES[exchange]):
        if ev["t"] == "recv" and key in str(ev["data"]):
            n += 1
    return n


def run_books(tmp_path, replay, exchange, symbols, until, extra=""):
    """Run one book collector per symbol concurrently; stop each once ``until`` holds."""
    cfg = write_config(tmp_path / "c.toml", exchange, replay, extra)
    done = []
    managers = [collector(tmp_path, exchange, s, "book", cfg) for s in symbols]
    procs = [m.__enter__() for m in managers]
    try:
        for c in procs:
            c.wait_for(lambda st, c=c: until(c, st), timeout=40)
        for c in procs:
            assert c.stop() == 0
            done.append(c)
    finally:
        for m in managers:
            m.__exit__(None, None, None)
    return done


def binance_done(c, st):
    depth_frames = recv_count("binance", f'"{c.symbol.lower()}@depth@100ms"')
    return st.get("frames", 0) >= depth_frames + 1 and st.get("rows", 0) > 0


class TestRecordedBooks:
    def test_binance_four_symbols_match_the_reference(self, tmp_path, recorded):
        with ReplayThread([CAPTURES["binance"]]) as r:
            done = run_books(tmp_path, r, "binance", BINANCE_SYMBOLS, binance_done)

        for c in done:
            rows = c.rows()
            assert rows, c.symbol
            assert rows == reference_binance(c.raw_events(), c.symbol), c.symbol
            assert (c.status()["gaps"], c.status()["resyncs"]) == (0, 0)

    def test_coinbase_ten_products_match_the_reference(self, tmp_path, recorded):
        def until(c, st):
            n = recv_count("coinbase", f'"product_id":"{c.symbol}"')
            return st.get("frames", 0) >= n

        with ReplayThread([CAPTURES["coinbase"]]) as r:
            done = run_books(tmp_path, r, "coinbase", COINBASE_PRODUCTS, until)

        for c in done:
            sent = [e for e in c.raw_events() if e["t"] == "send"]
            assert json.loads(sent[0]["data"])["channels"] == ["level2_batch", "heartbeat"]
            rows = c.rows()
            assert rows, c.symbol
            assert rows == reference_coinbase(c.raw_events(), c.symbol), c.symbol


class TestBookFaults:
    def test_skipped_diff_is_a_gap_then_resync_from_a_new_snapshot(self, tmp_path, recorded):
        """A gap discards the book; no rows until a new snapshot; correct rows after."""
        events = list(read_events(CAPTURES["binance"]))
        diffs = [
            json.loads(str(e["data"]))["data"]
            for e in events
            if e["t"] == "recv" and '"nknusdt@depth@100ms"' in str(e["data"])
        ]
        snap = next(
            json.loads(str(e["data"]))
            for e in events
            if e["t"] == "http" and "NKNUSDT" in str(e["url"])
        )
        book = RefBook(snap["bids"], snap["asks"])
        for d in diffs[:11]:  # a fresh snapshot taken after diff index 10
            if d["u"] > snap["lastUpdateId"]:
                book.apply(d["b"], d["a"])
        fresh = {
            "lastUpdateId": diffs[10]["u"],
            "bids": [list(v) for _, v in sorted(book.sides["B"].items(), reverse=True)],
            "asks": [list(v) for _, v in sorted(book.sides["A"].items())],
        }
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.skip_frames = (8,)
            r.faults.ws_fault_connections = None  # every connection skips it
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
                c.wait_for(lambda st: st.get("gaps", 0) >= 1)
                r.server.set_http("/api/v3/depth?symbol=NKNUSDT&limit=1000", json.dumps(fresh))
                c.wait_for(
                    lambda st: (
                        st.get("frames", 0) >= len(diffs)
                        and r.stats.http_requests["/api/v3/depth"] >= 2
                    )
                )
                time.sleep(0.3)
                assert c.stop() == 0

        raw = c.raw_events()
        gap = next(e for e in raw if e["t"] == "gap")
        assert (gap["kind"], gap["expected"]) == ("sequence", diffs[8]["U"])
        assert next(e for e in raw if e["t"] == "resync")["reason"] == "gap"
        assert c.rows() == reference_binance(raw, "NKNUSDT")
        assert c.status()["resyncs"] >= 1

    def test_dropped_connection_takes_a_new_snapshot(self, tmp_path, recorded):
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.stall_after = 30  # the snapshot arrives and the book syncs meanwhile
            r.faults.stall_s = 1.0
            r.faults.drop_after = 31
            done = run_books(
                tmp_path,
                r,
                "binance",
                ["NKNUSDT"],
                lambda c, st: binance_done(c, st) and st["reconnects"] >= 1,
            )
            snapshots = r.stats.http_requests["/api/v3/depth"]

        c = done[0]
        assert snapshots >= 2
        assert c.rows() == reference_binance(c.raw_events(), "NKNUSDT")
        assert [e["kind"] for e in c.raw_events() if e["t"] == "gap"] == ["disconnect"]

    def test_429_on_the_snapshot_backs_off_then_succeeds(self, tmp_path, recorded):
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.faults.http_errors = 2
            r.faults.http_error_status = 429
            r.faults.http_retry_after_s = 1
            t0 = time.monotonic()
            done = run_books(tmp_path, r, "binance", ["NKNUSDT"], binance_done)

        c = done[0]
        assert time.monotonic() - t0 >= 2.0
        retries = [e for e in c.log_events() if e.get("event") == "rest.retry"]
        assert [e["status"] for e in retries] == [429, 429]
        assert all(e["retry_in_s"] >= 1.0 for e in retries)
        assert c.rows() == reference_binance(c.raw_events(), "NKNUSDT")

    def test_stale_snapshot_is_fetched_again(self, tmp_path, recorded):
        events = list(read_events(CAPTURES["binance"]))
        body = next(
            str(e["data"]) for e in events if e["t"] == "http" and "NKNUSDT" in str(e["url"])
        )
        stale = dict(json.loads(body), lastUpdateId=1)
        path = "/api/v3/depth?symbol=NKNUSDT&limit=1000"
        with ReplayThread([CAPTURES["binance"]]) as r:
            r.server.set_http(path, json.dumps(stale))
            cfg = write_config(tmp_path / "c.toml", "binance", r)
            with collector(tmp_path, "binance", "NKNUSDT", "book", cfg) as c:
                deadline = time.monotonic() + 20
                while r.stats.http_requests["/api/v3/depth"] < 1:
                    assert time.monotonic() < deadline
                    time.sleep(0.02)
                r.server.set_http(path, body)
                c.wait_for(lambda st: binance_done(c, st))
                assert c.stop() == 0

        assert any(e.get("event") == "book.stale_snapshot" for e in c.log_events())
        assert c.rows() == reference_binance(c.raw_events(), "NKNUSDT")
        assert c.rows()[0][0] != "0"


def test_depth_1000ms_subscribes_the_plain_stream(tmp_path, recorded):
    with ReplayThread([CAPTURES["binance"]]) as r:
        done = run_books(
            tmp_path, r, "binance", ["NKNUSDT"], binance_done, extra="depth_update_speed_ms = 1000"
        )

    sent = next(e for e in done[0].raw_events() if e["t"] == "send")
    assert json.loads(sent["data"])["params"] == ["nknusdt@depth"]


class TestCoinbaseAuthenticated:
    """With COINBASE_API_* set, the book uses the signed `level2` channel (same code path)."""

    KEY = CoinbaseTestKey("test-key", base64.b64encode(b"test-secret").decode(), "test-pass")

    def test_signed_level2_matches_the_reference(self, tmp_path, recorded):
        env = {
            "COINBASE_API_KEY": self.KEY.key,
            "COINBASE_API_SECRET": self.KEY.secret_b64,
            "COINBASE_API_PASSPHRASE": self.KEY.passphrase,
        }
        with ReplayThread([CAPTURES["coinbase"]], coinbase_auth=self.KEY) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BAND-GBP", "book", cfg, env) as c:
                n = recv_count("coinbase", '"product_id":"BAND-GBP"')
                c.wait_for(lambda st: st.get("frames", 0) >= n)
                assert c.stop() == 0

        sent = json.loads(next(e for e in c.raw_events() if e["t"] == "send")["data"])
        assert sent["channels"] == ["level2", "heartbeat"]
        # The server checked the signature (it refuses a bad one); raw keeps no credential.
        assert (sent["key"], sent["passphrase"], sent["signature"]) == ("<redacted>",) * 3
        assert float(sent["timestamp"]) > 0
        raw_bytes = b"".join(gzip.decompress(p.read_bytes()) for p in c.files("raw"))
        for secret in (self.KEY.key, self.KEY.passphrase, self.KEY.sign(sent["timestamp"])):
            assert secret.encode() not in raw_bytes
        assert self.KEY.secret_b64 not in c.logs()
        assert c.rows() == reference_coinbase(c.raw_events(), "BAND-GBP")

    def test_wrong_secret_is_a_clear_error(self, tmp_path, recorded):
        env = {
            "COINBASE_API_KEY": self.KEY.key,
            "COINBASE_API_SECRET": base64.b64encode(b"wrong").decode(),
            "COINBASE_API_PASSPHRASE": self.KEY.passphrase,
        }
        with ReplayThread([CAPTURES["coinbase"]], coinbase_auth=self.KEY) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BAND-GBP", "book", cfg, env) as c:
                rc = c.proc.wait(20)

        assert rc == 2
        assert (
            "collector: fatal: coinbase rejected the subscription: Authentication Failed: "
            "invalid signature"
        ) in c.logs()

    def test_incomplete_credentials_are_a_config_error(self, tmp_path, recorded):
        env = {"COINBASE_API_KEY": "k", "COINBASE_API_SECRET": "", "COINBASE_API_PASSPHRASE": ""}
        with ReplayThread([CAPTURES["coinbase"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BAND-GBP", "book", cfg, env) as c:
                rc = c.proc.wait(20)

        assert rc == 2
        assert "incomplete Coinbase credentials: COINBASE_API_SECRET, COINBASE_API_PASSPHRASE" in (
            c.logs()
        )
