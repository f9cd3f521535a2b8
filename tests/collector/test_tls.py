"""The shared TLS client context (collector/common/tls.py): one per process, verifying, and
refusing a peer it has no reason to trust — checked against a real TLS server on loopback."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.common import tls
from tests.collector.selfsigned import self_signed


def test_one_context_for_the_websocket_and_the_rest_client() -> None:
    ws = tls.for_websocket("wss://stream.binance.com:9443/stream")
    assert ws is not None
    assert tls.for_http("https://api.binance.com/api/v3/depth") is ws
    assert tls.for_websocket("wss://ws-feed.exchange.coinbase.com") is ws  # made once
    assert ws.verify_mode == ssl.CERT_REQUIRED
    assert ws.check_hostname


def test_plain_urls_load_no_certificates() -> None:
    assert tls.for_websocket("ws://127.0.0.1:8765/stream") is None  # trio-websocket: none
    ctx = tls.for_http("http://127.0.0.1:8080")
    assert ctx is not tls.client_context()
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 0


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[int]:
    """A TLS server on loopback with a self-signed certificate for 127.0.0.1 / localhost;
    it answers every handshake it can until the test ends."""
    cert_file, key_file = self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_file, key_file)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with server_ctx.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass  # the client refused us: what the tests expect

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _handshake(ctx: ssl.SSLContext, port: int) -> None:
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
        ctx.wrap_socket(sock, server_hostname="localhost"),
    ):
        pass


def test_the_shared_context_refuses_an_untrusted_certificate(self_signed_server: int) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.client_context(), self_signed_server)


def test_the_plain_http_context_refuses_any_tls_peer(self_signed_server: int) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls.for_http("http://localhost"), self_signed_server)
