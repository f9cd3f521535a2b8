"""A session over ``wss://``: the collector's TLS client context and its socket reads
(collector/wslib.py ``RECEIVE_BUFFER_SIZE``: trio's estimate under TLS) against a real
TLS websocket server on loopback.

The shared context trusts the system's certificates only, and is made once per process, so
the session runs in a child interpreter whose ``SSL_CERT_FILE`` is the test's self-signed
certificate (what OpenSSL honours for an operator's own CA bundle too); this process's
context stays untouched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from tests.collector.selfsigned import self_signed
from tests.conftest import REPO

# The child: a TLS websocket server that sends the texts back to back and closes, and a
# Session on wss://localhost that writes every frame it was delivered, in order.
CHILD = """
import ssl, sys
import orjson, trio
from collector.common.retry import BackoffSettings
from collector.session import Session, SessionSettings
from collector.wslib import trio_websocket

cert, key, texts_file, out_file = sys.argv[1:5]
texts = orjson.loads(open(texts_file, "rb").read())

async def main():
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    frames = []

    async def handler(request):
        ws = await request.accept()
        for text in texts:
            await ws.send_message(text)
        await ws.aclose()

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                trio_websocket.serve_websocket, handler, "127.0.0.1", 0, server_ctx
            )

            def deliver(frame):
                frames.append([frame.t, frame.data])
                if frame.t == "disconnect":
                    nursery.cancel_scope.cancel()
                return frame.t == "recv"

            settings = SessionSettings(
                url=f"wss://localhost:{server.port}/stream",
                subscribe=lambda now: [],
                watchdog_s=30.0,
                max_connection_age_s=0.0,
                max_message_size=1 << 20,
                backoff=BackoffSettings(initial_s=0.01, max_s=1.0, multiplier=2.0),
            )
            nursery.start_soon(Session(settings, deliver).run)
    open(out_file, "wb").write(orjson.dumps(frames))

trio.run(main)
"""


def test_a_wss_burst_arrives_whole_and_in_order_through_tls_reads(tmp_path: Path) -> None:
    """3,000 trade-sized frames and two larger than any single read (200 kB: many TLS
    records; 70 kB: more than a plain socket's 64 KiB read) arrive exactly, in order."""
    cert, key = self_signed(tmp_path)
    texts = [
        orjson.dumps(
            {"stream": "btcusdt@trade", "data": {"t": i, "p": f"{60000 + i % 97}.01"}}
        ).decode()
        for i in range(3000)
    ]
    texts[1000] = '{"big":"' + "x" * 200_000 + '"}'
    texts[2000] = '{"big":"' + "é" * 35_000 + '"}'  # 70 kB of UTF-8, split across reads
    texts_file, out_file = tmp_path / "texts.json", tmp_path / "frames.json"
    texts_file.write_bytes(orjson.dumps(texts))
    env = {**os.environ, "SSL_CERT_FILE": str(cert), "PYTHONPATH": str(REPO)}
    env.pop("SSL_CERT_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(cert), str(key), str(texts_file), str(out_file)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    frames = orjson.loads(out_file.read_bytes())
    assert [t for t, _ in frames] == ["connect", *["recv"] * len(texts), "disconnect"]
    assert [data for _, data in frames[1:-1]] == texts
