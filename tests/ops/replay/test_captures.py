"""Captures (exchange detection, bad encodings) and ReplayThread for synchronous code."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest

from ops.replay import (
    Capture,
    CaptureError,
    ReplayThread,
    write_capture,
)


def test_replay_thread_for_synchronous_code(captures: dict[str, Capture]) -> None:
    """ReplayThread serves from a background thread; faults and set_http work at runtime."""
    with ReplayThread([captures["coinbase"]]) as replay:
        replay.faults.http_errors = 1
        limited = httpx.get(f"{replay.http_url}/products", timeout=5)
        products = httpx.get(f"{replay.http_url}/products", timeout=5)
        replay.set_http("/time", '{"epoch":1}')
        clock = httpx.get(f"{replay.http_url}/time", timeout=5)
        ws_url = replay.ws_url

    assert limited.status_code == 429
    assert products.content == captures["coinbase"].http[0].body
    assert clock.json() == {"epoch": 1}
    assert ws_url.startswith("ws://127.0.0.1:")


def test_capture_without_exchange_hint_is_an_error(tmp_path: Path) -> None:
    """A capture with no header and no exchange URLs cannot be served."""
    path = write_capture(
        tmp_path / "x.jsonl.gz", [{"t": "recv", "conn": "c", "ts": 1, "data": "{}"}]
    )

    with pytest.raises(CaptureError, match="cannot tell the exchange"):
        Capture.load(path)


def test_capture_exchange_from_raw_file_name(tmp_path: Path) -> None:
    """A collector raw file recorded against 127.0.0.1 takes its exchange from its name."""
    name = "20240101T000000Z_bitstamp_btcusd_trade.jsonl.gz"
    events = [{"t": "connect", "conn": "c1", "ts": 1, "addr": "ws://127.0.0.1:8000"}]

    capture = Capture.load(write_capture(tmp_path / name, events))

    assert capture.exchange == "bitstamp"


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ({"encoding": "base64", "data": "not base64!"}, "not valid base64"),
        ({"encoding": "gzip", "data": "eA=="}, "unknown encoding 'gzip'"),
    ],
)
def test_capture_with_bad_encoding_is_an_error(
    tmp_path: Path, event: dict[str, str], message: str
) -> None:
    """A recv event whose base64 does not decode, or with an unknown encoding, cannot be
    served."""
    line = {"t": "recv", "conn": "c1", "ts": 1.0, **event}
    path = tmp_path / "bad.jsonl"
    path.write_bytes(
        orjson.dumps({"t": "header", "exchange": "BINANCE"}) + b"\n" + orjson.dumps(line)
    )

    with pytest.raises(CaptureError, match=message):
        Capture.load(path)
