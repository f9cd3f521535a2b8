"""The collector process with ``--data_type l3`` against the replay server, per exchange.

There are no L3 recordings: captures are built from the docs (tests/data/l3/*.json cite the
sections) with ``ops.replay.write_capture``. Rows are compared exactly (all but local_time).
"""

from __future__ import annotations

import base64
import json
import zlib

from ops.replay import CoinbaseTestKey, ReplayThread, write_capture
from tests.collector.harness import collector, write_config

TEST_KEY = CoinbaseTestKey("test-key", base64.b64encode(b"test-secret").decode(), "test-pass")
GOOD_ENV = {
    "COINBASE_API_KEY": "test-key",
    "COINBASE_API_SECRET": base64.b64encode(b"test-secret").decode(),
    "COINBASE_API_PASSPHRASE": "test-pass",
}
T = "2021-04-17T10:00:00.000000Z"
T_MS = "1618653600000"
A_ID, B_ID, C_ID = (
    "aaaaaaaa-0000-4000-8000-000000000001",
    "bbbbbbbb-0000-4000-8000-000000000002",
    "cccccccc-0000-4000-8000-000000000003",
)
Y_ID, Z_ID = "dddddddd-0000-4000-8000-000000000004", "eeeeeeee-0000-4000-8000-000000000005"


def cb(kind: str, seq: int, **fields: object) -> dict[str, object]:
    return {"type": kind, "time": T, "product_id": "BTC-USD", "sequence": seq, **fields}


COINBASE_FRAMES = [
    cb("open", 101, order_id=A_ID, price="100.10", remaining_size="1.5", side="sell"),
    cb("received", 102, order_id=Y_ID, size="2", price="99.50", side="buy", order_type="limit"),
    cb("open", 103, order_id=Y_ID, price="99.50", remaining_size="2", side="buy"),
    cb(
        "match",
        104,
        trade_id=7,
        maker_order_id=A_ID,
        taker_order_id=Y_ID,
        size="0.5",
        price="100.10",
        side="sell",
    ),  # fmt: skip
    cb(
        "done", 105, order_id=Y_ID, price="99.50", remaining_size="2", reason="canceled", side="buy"
    ),  # fmt: skip
    cb(
        "change",
        106,
        order_id=A_ID,
        side="sell",
        old_size="1",
        new_size="0.8",
        price="100.10",
        reason="STP",
    ),  # fmt: skip
    cb("received", 107, order_id=Z_ID, size="1", price="100.20", side="sell", order_type="limit"),
    cb("done", 108, order_id="ffffffff-0000-4000-8000-00000000dead", reason="filled", side="buy"),
    cb("open", 109, order_id=Z_ID, price="100.20", remaining_size="1", side="sell"),
    cb(
        "change",
        110,
        order_id=Z_ID,
        side="sell",
        old_size="1",
        new_size="1",
        old_price="100.20",
        new_price="100.30",
        reason="modify_order",
    ),  # fmt: skip
]
COINBASE_SNAPSHOT = {
    "sequence": 102,
    "bids": [["99.00", "3", B_ID]],
    "asks": [["100.10", "1.5", A_ID], ["101.00", "0.25", C_ID]],
}
COINBASE_ROWS = [
    [T_MS, "BTC-USD", "102", "snapshot", B_ID, "B", "99.00", "3", "", "", "", ""],
    [T_MS, "BTC-USD", "102", "snapshot", A_ID, "A", "100.10", "1.5", "", "", "", ""],
    [T_MS, "BTC-USD", "102", "snapshot", C_ID, "A", "101.00", "0.25", "", "", "", ""],
    [T_MS, "BTC-USD", "103", "add", Y_ID, "B", "99.50", "2", "", "", "", ""],
    [T_MS, "BTC-USD", "104", "match", A_ID, "A", "100.10", "0.5", "7", A_ID, Y_ID, ""],
    [T_MS, "BTC-USD", "105", "delete", Y_ID, "B", "99.50", "2", "", "", "", "canceled"],
    [T_MS, "BTC-USD", "106", "change", A_ID, "A", "100.10", "0.8", "", "", "", "STP"],
    [
        T_MS,
        "BTC-USD",
        "108",
        "delete",
        "ffffffff-0000-4000-8000-00000000dead",
        "B",
        "",
        "",
        "",
        "",
        "",
        "filled",
    ],  # fmt: skip
    [T_MS, "BTC-USD", "109", "add", Z_ID, "A", "100.20", "1", "", "", "", ""],
    [T_MS, "BTC-USD", "110", "change", Z_ID, "A", "100.30", "1", "", "", "", "modify_order"],
]


def coinbase_capture(path, snapshot=COINBASE_SNAPSHOT, frames=COINBASE_FRAMES):
    snap_time = {**snapshot, "time": T}
    events: list[dict[str, object]] = [
        {"t": "http", "conn": "rest", "ts": 1.0, "status": 200, "data": snap_time,
         "url": "https://api.exchange.coinbase.com/products/BTC-USD/book?level=3"},
        {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://ws-feed.exchange.coinbase.com"},
    ]  # fmt: skip
    events += [{"t": "recv", "conn": "c", "ts": 1.0 + i / 1000, "data": f} for i, f in
               enumerate(frames)]  # fmt: skip
    return write_capture(path, events, exchange="coinbase")


def run_l3(tmp_path, replay, exchange, symbol, n_rows, env=None, until=None):
    cfg = write_config(tmp_path / "c.toml", exchange, replay)
    with collector(tmp_path, exchange, symbol, "l3", cfg, env=env) as c:
        c.wait_for(until or (lambda s: s.get("rows", 0) >= n_rows))
        assert c.stop() == 0
        return c


def run_coinbase_gap(tmp_path):
    """Sequence 106 skipped: the collector resyncs from a newer snapshot (107)."""
    cap = coinbase_capture(tmp_path / "cb.jsonl.gz")
    with ReplayThread([cap], coinbase_auth=TEST_KEY) as r:
        r.faults.skip_frames = (5,)  # sequence 106
        cfg = write_config(tmp_path / "c.toml", "coinbase", r)
        with collector(tmp_path, "coinbase", "BTC-USD", "l3", cfg, env=GOOD_ENV) as c:
            c.wait_for(lambda s: s.get("resyncs", 0) >= 1)
            newer = {
                "sequence": 107,
                "bids": [["99.00", "3", B_ID]],
                "asks": [["100.10", "0.8", A_ID], ["101.00", "0.25", C_ID]],
                "time": T,
            }
            r.set_http("/products/BTC-USD/book?level=3", json.dumps(newer))
            c.wait_for(lambda s: s.get("rows", 0) >= 12)
            assert c.stop() == 0
    return c, cfg


class TestCoinbaseFull:
    def test_rows_from_snapshot_and_stream(self, tmp_path):
        """Signed `full` subscribe; messages <= the snapshot's sequence dropped; exact rows."""
        cap = coinbase_capture(tmp_path / "cb.jsonl.gz")
        with ReplayThread([cap], coinbase_auth=TEST_KEY) as r:
            c = run_l3(tmp_path, r, "coinbase", "BTC-USD", len(COINBASE_ROWS), env=GOOD_ENV)

        rows = c.rows()
        assert [row[:-1] for row in rows] == COINBASE_ROWS
        assert all(row[-1].isdigit() for row in rows)
        raw = c.raw_events()
        sent = json.loads(next(e["data"] for e in raw if e["t"] == "send"))
        assert sent["channels"] == ["full", "heartbeat"]
        # the server accepted the signature; the raw capture keeps no credential
        assert (sent["key"], sent["passphrase"], sent["signature"]) == ("<redacted>",) * 3
        assert [e["url"] for e in raw if e["t"] == "http"] == [
            f"{r.http_url}/products/BTC-USD/book?level=3"
        ]
        status = c.status()
        assert (status["gaps"], status["resyncs"], status["parse_errors"]) == (0, 0, 0)

    def test_sequence_gap_resyncs_from_a_new_snapshot(self, tmp_path):
        """A skipped message is a gap: marker in raw, new snapshot rows, then the stream."""
        c, _ = run_coinbase_gap(tmp_path)

        rows = [row[:-1] for row in c.rows()]
        assert rows[:6] == COINBASE_ROWS[:6]
        assert rows[6:] == [
            [T_MS, "BTC-USD", "107", "snapshot", B_ID, "B", "99.00", "3", "", "", "", ""],
            [T_MS, "BTC-USD", "107", "snapshot", A_ID, "A", "100.10", "0.8", "", "", "", ""],
            [T_MS, "BTC-USD", "107", "snapshot", C_ID, "A", "101.00", "0.25", "", "", "", ""],
            *COINBASE_ROWS[7:],
        ]
        gaps = [e for e in c.raw_events() if e["t"] == "gap"]
        assert [(g["kind"], g["expected"], g["got"]) for g in gaps] == [("sequence", 106, 107)]
        assert c.status()["gaps"] == 1

    def test_wrong_signature_is_a_clear_fatal_error(self, tmp_path):
        """The exchange's 'Authentication Failed' ends the process with exit 2 and says why."""
        cap = coinbase_capture(tmp_path / "cb.jsonl.gz")
        env = {**GOOD_ENV, "COINBASE_API_SECRET": base64.b64encode(b"wrong").decode()}
        with ReplayThread([cap], coinbase_auth=TEST_KEY) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BTC-USD", "l3", cfg, env=env) as c:
                code = c.proc.wait(20)

        assert code == 2
        assert "Authentication Failed: invalid signature" in c.logs()
        assert "collector: fatal: coinbase rejected the subscription" in c.logs()

    def test_missing_credentials_is_a_config_error(self, tmp_path):
        cap = coinbase_capture(tmp_path / "cb.jsonl.gz")
        env = {k: "" for k in GOOD_ENV}
        with ReplayThread([cap], coinbase_auth=TEST_KEY) as r:
            cfg = write_config(tmp_path / "c.toml", "coinbase", r)
            with collector(tmp_path, "coinbase", "BTC-USD", "l3", cfg, env=env) as c:
                code = c.proc.wait(20)

        assert code == 2
        assert "needs COINBASE_API_KEY, COINBASE_API_SECRET and COINBASE_API_PASSPHRASE" in (
            c.logs()
        )
        assert not (tmp_path / "data" / "coinbase").exists()


def bs(event: str, oid: int, side: int, price: str, amount: str, mt: int) -> dict[str, object]:
    data = {"id": oid, "id_str": str(oid), "order_type": side, "datetime": str(mt // 10**6),
            "microtimestamp": str(mt), "amount": float(amount), "amount_str": amount,
            "price": float(price), "price_str": price}  # fmt: skip
    return {"data": data, "channel": "live_orders_ethusd", "event": event}


class TestBitstampLiveOrders:
    def test_microtimestamp_alignment_and_rows(self, tmp_path):
        """Events at or before the group=2 snapshot's microtimestamp are dropped."""
        m = 1641343695681418
        snapshot = {"timestamp": str(m // 10**6), "microtimestamp": str(m),
                    "bids": [["3802.90", "0.60000000", "11"]],
                    "asks": [["3805.44", "1.00000000", "12"]]}  # fmt: skip
        frames = [
            bs("order_created", 11, 0, "3802.90", "0.60000000", m - 5),  # in the snapshot
            bs("order_changed", 12, 1, "3805.44", "1.00000000", m),  # == snapshot: dropped
            bs("order_created", 13, 1, "3806.00", "2.00000000", m + 1),
            bs("order_changed", 11, 0, "3802.90", "0.10000000", m + 2),
            bs("order_deleted", 12, 1, "3805.44", "1.00000000", m + 3),
        ]
        events: list[dict[str, object]] = [
            {"t": "http", "conn": "rest", "ts": 1.0, "status": 200, "data": snapshot,
             "url": "https://www.bitstamp.net/api/v2/order_book/ethusd?group=2"},
            {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://ws.bitstamp.net"},
        ]  # fmt: skip
        events += [{"t": "recv", "conn": "c", "ts": 1.0, "data": f} for f in frames]
        cap = write_capture(tmp_path / "bs.jsonl.gz", events, exchange="bitstamp")
        with ReplayThread([cap]) as r:
            c = run_l3(tmp_path, r, "bitstamp", "ethusd", 5)

        ms = str(m // 1000)
        assert [row[:-1] for row in c.rows()] == [
            [ms, "ethusd", "", "snapshot", "11", "B", "3802.90", "0.60000000", "", "", "", ""],
            [ms, "ethusd", "", "snapshot", "12", "A", "3805.44", "1.00000000", "", "", "", ""],
            [ms, "ethusd", "", "add", "13", "A", "3806.00", "2.00000000", "", "", "", ""],
            [ms, "ethusd", "", "change", "11", "B", "3802.90", "0.10000000", "", "", "", ""],
            [ms, "ethusd", "", "delete", "12", "A", "3805.44", "1.00000000", "", "", "", ""],
        ]
        sent = [e["data"] for e in c.raw_events() if e["t"] == "send"]
        assert sent == ['{"event":"bts:subscribe","data":{"channel":"live_orders_ethusd"}}']


def signed_crc(text: str) -> int:
    crc = zlib.crc32(text.encode())
    return crc - 2**32 if crc >= 2**31 else crc


def bitfinex_capture(path, checksum: int):
    ack = {"event": "subscribed", "channel": "book", "chanId": 555, "symbol": "tBTCUSD",
           "prec": "R0", "freq": "F0", "len": "100", "pair": "BTCUSD"}  # fmt: skip
    frames = [
        '{"event":"info","version":2,"platform":{"status":1}}',
        json.dumps(ack),
        "[555,[[3,9500,0.5],[1,9500,0.25],[7,9501,-0.01]],1,1700000000000]",
        "[555,[4,9499.5,1.2],2,1700000000001]",
        "[555,[3,0,1],3,1700000000002]",
        '[555,"hb",4,1700000000003]',
        f'[555,"cs",{checksum},5,1700000000004]',
    ]
    events: list[dict[str, object]] = [
        {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://api-pub.bitfinex.com/ws/2"}
    ]
    events += [{"t": "recv", "conn": "c", "ts": 1.0, "data": f} for f in frames]
    return write_capture(path, events, exchange="bitfinex")


# bids: 9500 (ids 1 then 3 -> 3 deleted), 9499.5 id 4; asks: 9501 id 7 (amount as sent)
GOOD_CS = signed_crc("1:0.25:7:-0.01:4:1.2")
BITFINEX_ROWS = [
    ["1700000000000", "BTCUSD", "1", "snapshot", "3", "B", "9500", "0.5", "", "", "", ""],
    ["1700000000000", "BTCUSD", "1", "snapshot", "1", "B", "9500", "0.25", "", "", "", ""],
    ["1700000000000", "BTCUSD", "1", "snapshot", "7", "A", "9501", "0.01", "", "", "", ""],
    ["1700000000001", "BTCUSD", "2", "add", "4", "B", "9499.5", "1.2", "", "", "", ""],
    ["1700000000002", "BTCUSD", "3", "delete", "3", "B", "0", "1", "", "", "", ""],
]


class TestBitfinexRawBook:
    def test_rows_and_verified_checksum(self, tmp_path):
        """conf flags then R0 subscribe; the checksum matches the rebuilt book: no resync."""
        cap = bitfinex_capture(tmp_path / "bf.jsonl.gz", GOOD_CS)
        with ReplayThread([cap]) as r:
            c = run_l3(
                tmp_path, r, "bitfinex", "BTCUSD", 5,
                until=lambda s: s.get("rows", 0) >= 5 and s.get("frames", 0) >= 8,
            )  # fmt: skip

        assert [row[:-1] for row in c.rows()] == BITFINEX_ROWS
        sent = [json.loads(e["data"]) for e in c.raw_events() if e["t"] == "send"]
        assert sent == [
            {"event": "conf", "flags": 229376},
            {"event": "subscribe", "channel": "book", "symbol": "tBTCUSD", "prec": "R0",
             "freq": "F0", "len": "100"},
        ]  # fmt: skip
        status = c.status()
        assert (status["gaps"], status["resyncs"], status["parse_errors"]) == (0, 0, 0)

    def test_checksum_mismatch_marks_a_gap_and_resubscribes(self, tmp_path):
        """A wrong checksum: gap marker (kind checksum), reconnect, fresh snapshot rows."""
        cap = bitfinex_capture(tmp_path / "bf.jsonl.gz", GOOD_CS + 1)
        with ReplayThread([cap]) as r:
            c = run_l3(
                tmp_path, r, "bitfinex", "BTCUSD", 10,
                until=lambda s: s.get("resyncs", 0) >= 1 and s.get("rows", 0) >= 10,
            )  # fmt: skip

        rows = [row[:-1] for row in c.rows()]
        assert rows[:10] == BITFINEX_ROWS + BITFINEX_ROWS
        gaps = [e for e in c.raw_events() if e["t"] == "gap" and e["kind"] == "checksum"]
        assert (gaps[0]["expected"], gaps[0]["got"]) == (GOOD_CS + 1, GOOD_CS)
        assert c.status()["reconnects"] >= 1


class TestBitstampRecorded:
    """Bitstamp `trade` and `book` from the 2022-01-05 recording (the adapters' L2 side)."""

    def test_trades(self, tmp_path, recorded):
        with ReplayThread([recorded["bitstamp"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitstamp", r)
            with collector(tmp_path, "bitstamp", "ethusd", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 10)
                assert c.stop() == 0

        rows = c.rows()
        assert [row[:7] for row in rows[:1]] == [
            ["1641343699596", "ethusd", "216000477", "3805.44", "0.07920000", "1641343699596",
             "False"],
        ]  # fmt: skip
        assert len(rows) == 10
        assert c.status()["gaps"] == 0  # trade ids are global across pairs: no gap counted

    def test_book_matches_a_reference_built_from_the_recording(self, tmp_path, recorded):
        """Diffs with microtimestamp <= the REST snapshot's are dropped; final top 5 agrees."""
        from decimal import Decimal

        from tests.conftest import read_events

        snap = next(
            json.loads(str(e["data"])) for e in read_events(recorded["bitstamp"])
            if e["t"] == "http" and str(e["url"]).endswith("/order_book/ethusd")
        )  # fmt: skip
        diffs = [
            json.loads(str(e["data"]))["data"] for e in read_events(recorded["bitstamp"])
            if e["t"] == "recv" and '"diff_order_book_ethusd"' in str(e["data"])
            and '"event":"data"' in str(e["data"])
        ]  # fmt: skip
        book = {side: {Decimal(p): q for p, q in snap[side]} for side in ("bids", "asks")}
        for d in diffs:
            if int(d["microtimestamp"]) <= int(snap["microtimestamp"]):
                continue
            for side in ("bids", "asks"):
                for p, q in d[side]:
                    if Decimal(q) == 0:
                        book[side].pop(Decimal(p), None)
                    else:
                        book[side][Decimal(p)] = q
        top_b = sorted(book["bids"].items(), reverse=True)[:5]
        top_a = sorted(book["asks"].items())[:5]
        expected = [["B", str(p), q, str(i)] for i, (p, q) in enumerate(top_b, 1)]
        expected += [["A", str(p), q, str(i)] for i, (p, q) in enumerate(top_a, 1)]

        with ReplayThread([recorded["bitstamp"]]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitstamp", r)
            with collector(tmp_path, "bitstamp", "ethusd", "book", cfg) as c:
                c.wait_for(lambda s: s.get("frames", 0) >= 86 and s.get("rows", 0) >= 10)
                assert c.stop() == 0

        rows = c.rows()
        assert [row[2:6] for row in rows[-10:]] == expected
        status = c.status()
        assert (status["gaps"], status["resyncs"], status["parse_errors"]) == (0, 0, 0)


class TestBitfinexTrades:
    def test_te_rows(self, tmp_path):
        ack = {"event": "subscribed", "channel": "trades", "chanId": 9, "symbol": "tBTCUSD",
               "pair": "BTCUSD"}  # fmt: skip
        frames = [
            json.dumps(ack),
            "[9,[[401597395,1574694478808,0.005,7245.3]],1574694478900]",
            '[9,"te",[401597396,1574694478809,-0.02,7245.3],1574694478810]',
            '[9,"tu",[401597396,1574694478809,-0.02,7245.3],1574694478811]',
            '[9,"te",[401597397,1574694478811,0.0015,7245.4],1574694478812]',
        ]
        events: list[dict[str, object]] = [
            {"t": "connect", "conn": "c", "ts": 1.0, "addr": "wss://api-pub.bitfinex.com/ws/2"}
        ]
        events += [{"t": "recv", "conn": "c", "ts": 1.0, "data": f} for f in frames]
        cap = write_capture(tmp_path / "bft.jsonl.gz", events, exchange="bitfinex")
        with ReplayThread([cap]) as r:
            cfg = write_config(tmp_path / "c.toml", "bitfinex", r)
            with collector(tmp_path, "bitfinex", "BTCUSD", "trade", cfg) as c:
                c.wait_for(lambda s: s.get("rows", 0) >= 2)
                assert c.stop() == 0

        assert [row[:7] for row in c.rows()] == [
            ["1574694478809", "BTCUSD", "401597396", "7245.3", "0.02", "1574694478809", "True"],
            ["1574694478811", "BTCUSD", "401597397", "7245.4", "0.0015", "1574694478811",
             "False"],
        ]  # fmt: skip
