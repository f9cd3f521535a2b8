"""python -m ops.replay: serving until SIGTERM, exit 2 with one line for bad flags or
captures, hostile flags reaching the server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import trio
from trio_websocket import (
    open_websocket_url,
)

from ops.replay import (
    Capture,
    ReplayServer,
)
from tests.ops.replay.helpers import (
    FILES,
    KEY,
    ROOT,
    accept_token,
    head_of,
    raw_upgrade,
    read_all,
    trade_frames,
)


async def test_cli_serves_and_stops_on_sigterm() -> None:
    """python -m ops.replay logs replay.listening with its port, serves, exits 0 on SIGTERM."""
    cmd = [sys.executable, "-m", "ops.replay", "--capture", str(FILES["coinbase"]), "--port", "0"]

    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        buf = b""
        while b"replay.listening" not in buf:
            chunk = await proc.stderr.receive_some()
            assert chunk, buf
            buf += chunk
        line = next(ln for ln in buf.splitlines() if b"replay.listening" in ln)
        port = json.loads(line)["port"]
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/products")
        proc.terminate()
        code = await proc.wait()

    assert response.content == Capture.load(FILES["coinbase"]).http[0].body
    assert code == 0


def test_cli_bad_capture_exits_2(tmp_path: Path) -> None:
    """A missing capture file is a one-line error naming it, exit code 2."""
    missing = tmp_path / "nope.jsonl.gz"

    done = subprocess.run(
        [sys.executable, "-m", "ops.replay", "--capture", str(missing)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert str(missing) in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


async def test_cli_hostile_flags(trades_capture: Path) -> None:
    """--bad-handshakes/--bad-handshake, --inject and --inject-base64 (in command-line order)
    reach the server."""
    frames = trade_frames(trades_capture)
    cmd = [sys.executable, "-m", "ops.replay", "--capture", str(trades_capture), "--port", "0",
           "--bad-handshakes", "1", "--bad-handshake", "no_upgrade",
           "--inject", "1:x:y", "--inject-base64", "1:/w==", "--inject", "2:"]  # fmt: skip

    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process(cmd, cwd=ROOT, stderr=subprocess.PIPE)
        try:
            assert proc.stderr is not None
            buf = b""
            while b"replay.listening" not in buf:
                chunk = await proc.stderr.receive_some()
                assert chunk, buf
                buf += chunk
            line = next(ln for ln in buf.splitlines() if b"replay.listening" in ln)
            server = ReplayServer([trades_capture])
            server.port = json.loads(line)["port"]
            reply, _ = await raw_upgrade(server, KEY, wait_s=0.3)
            async with open_websocket_url(f"{server.ws_url}/stream") as ws:
                await ws.send_message('{"method":"SUBSCRIBE","params":["btcusdt@trade"],"id":1}')
                got = await read_all(ws)
        finally:
            proc.terminate()
            await proc.wait()

    assert head_of(reply)[1] == {b"sec-websocket-accept": accept_token(KEY)}
    assert got[1:] == [frames[0], "x:y", b"\xff", frames[1], "", *frames[2:]]


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--inject", "x:hello", "--inject must be N:VALUE with N >= 0, got 'x:hello'"),
        ("--inject", "hello", "--inject must be N:VALUE with N >= 0, got 'hello'"),
        ("--inject-base64", "1:%%%", "--inject-base64 value is not base64: '%%%'"),
        ("--nested-depth", "0", "--nested-depth must be >= 1, got 0"),
    ],
)
def test_cli_bad_hostile_flags_exit_2(flag: str, value: str, message: str) -> None:
    """A malformed fault flag is one line naming the bad value, exit 2."""
    done = subprocess.run(
        [sys.executable, "-m", "ops.replay", "--capture", str(FILES["coinbase"]), flag, value],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"ops.replay: error: {message}"]
