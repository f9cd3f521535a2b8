"""``ops.fleet.connect``: XML-RPC over a unix socket, every call bounded by its timeout.

The peers are real unix sockets in a short temp dir: an XML-RPC server (the standard
library's dispatcher behind a unix stream server), one that accepts and never answers, and a
socket file nobody listens on. The round trip with a real supervisord is in test_fleet.py.
"""

from __future__ import annotations

import shutil
import socket
import socketserver
import tempfile
import threading
import time
import xmlrpc.server
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.fleet import connect, is_running


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temp dir short enough for a unix socket path (at most 107 bytes)."""
    d = Path(tempfile.mkdtemp(prefix="fc", dir="/tmp"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class _Handler(xmlrpc.server.SimpleXMLRPCRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as supervisord's HTTP server does
    disable_nagle_algorithm = False  # a TCP option: a unix socket refuses it

    def address_string(self) -> str:
        return "unix"  # a unix peer has no address tuple


class _UnixXMLRPCServer(
    socketserver.ThreadingMixIn,
    socketserver.UnixStreamServer,
    xmlrpc.server.SimpleXMLRPCDispatcher,
):
    """``SimpleXMLRPCServer`` on a unix socket; counts the connections it accepts."""

    daemon_threads = True
    logRequests = False  # noqa: N815 - the name SimpleXMLRPCRequestHandler reads

    def __init__(self, path: str) -> None:
        xmlrpc.server.SimpleXMLRPCDispatcher.__init__(self, allow_none=True)
        socketserver.UnixStreamServer.__init__(self, path, _Handler)
        self.connections = 0

    def get_request(self) -> tuple[socket.socket, object]:
        self.connections += 1
        return super().get_request()


@pytest.fixture
def rpc_server(short_dir: Path) -> Iterator[_UnixXMLRPCServer]:
    server = _UnixXMLRPCServer(str(short_dir / "rpc.sock"))
    server.register_function(lambda: {"statename": "RUNNING"}, "supervisor.getState")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_calls_go_over_the_unix_socket_on_one_connection(rpc_server: _UnixXMLRPCServer) -> None:
    """Two calls are answered through the socket file, on one persistent connection."""
    rpc = connect(rpc_server.server_address, timeout_s=5.0)  # type: ignore[arg-type]

    try:
        first = rpc.supervisor.getState()
        second = rpc.supervisor.getState()
    finally:
        rpc("close")()

    assert first == second == {"statename": "RUNNING"}
    assert rpc_server.connections == 1


def test_a_call_without_an_answer_times_out(short_dir: Path) -> None:
    """A peer that accepts and never answers raises TimeoutError after ``timeout_s``."""
    path = short_dir / "mute.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    rpc = connect(path, timeout_s=0.3)

    t0 = time.monotonic()
    try:
        with pytest.raises(TimeoutError):
            rpc.supervisor.getState()
    finally:
        rpc("close")()
        listener.close()

    assert time.monotonic() - t0 < 5.0


def test_a_socket_file_nobody_listens_on_is_not_running(short_dir: Path) -> None:
    """A stale socket file (supervisord gone) is refused at once: not running."""
    path = short_dir / "stale.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()

    t0 = time.monotonic()
    running = is_running(path)

    assert path.exists()
    assert running is False
    assert time.monotonic() - t0 < 5.0
