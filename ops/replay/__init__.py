"""Replay server: exchange websocket + REST endpoints on 127.0.0.1, fed from captures.

A product feature (the offline demo) and the local peer of every collector test. One TCP port
serves both plain HTTP (REST paths answered with the recorded bodies) and websocket upgrades
(the exchange's subscribe protocol, then the recorded frames of what was subscribed, as the
exact recorded strings, at recorded pace times ``speed``). It is an independent peer that
imports nothing of the collector (nor secmaster, qa or the rest of ops): a misreading of an
exchange's protocol in the collector is never mirrored by the peer it is tested against.

Captures use the raw JSONL envelope of ``shared/data/recorded`` (``t``/``conn``/``ts``/``data``);
``write_capture`` builds small ones for unrecorded shapes. The exchange of a capture comes
from its ``header`` line, its URLs' hosts, or its file name; each exchange is a venue
(``ops.replay.venues``: the protocols table is there).

With several exchanges on one server, prefix paths with the exchange id
(``ws://127.0.0.1:PORT/coinbase``, ``http://127.0.0.1:PORT/binance/api/v3/depth?...``).
A connection replays the recv frames of every recorded connection of the capture(s), in file
order. A ``recv`` event with ``"encoding": "base64"`` (how a collector records a binary frame)
is sent as a binary message of exactly those bytes; when they are not JSON, the frame goes with
the frame recorded before it on its connection.

Fault switches live on a mutable ``Faults``; websocket faults are copied when a connection is
accepted and apply to the next ``ws_fault_connections`` connections only. Together they make a
hostile exchange (CLI flags in brackets):

================== ===========================================================================
class              switch
================== ===========================================================================
handshake faults   ``bad_handshakes`` K × ``bad_handshake`` = hang | bad_accept | no_upgrade |
                   garbage | close [``--bad-handshakes K --bad-handshake KIND``]; refusals:
                   ``reject_handshakes`` [``--reject-handshakes``, ``--reject-status``]
flapping           ``drop_after=0``, ``ws_fault_connections=None`` (closed right after every
                   subscription ack) [``--drop-after 0 --fault-connections 0``]
drops, stalls      ``drop_after``, ``stall_after`` [``--drop-after``, ``--stall-after``]
gaps               ``skip_frames`` [``--skip-frame``]
garbage, oversized ``garbage_after``, ``oversized_after`` [``--garbage-after``, ``--oversized-*``]
nested JSON        ``nested_after``, ``nested_depth`` [``--nested-after``, ``--nested-depth``]
any frame          ``inject`` = ((N, str | bytes), ...): forged values, foreign symbols, stray
                   ids, error frames, non-UTF-8 binary [``--inject N:TEXT``,
                   ``--inject-base64 N:B64``]
server reconnect   ``reconnect_request_after``: the venue's reconnect request, where the
                   exchange has one [``--reconnect-request-after``]
HTTP 429/418       ``http_errors`` [``--http-errors``, ``--http-error-status``, ``--retry-after``]
================== ===========================================================================

The package (httpx ``_transports/`` shape, one module per role):

=============== ==========================================================================
``server``      ``ReplayServer`` (listening, routing one port to REST or websocket, HTTP and
                handshake faults), ``ReplayThread`` (the server in a thread)
``http``        the minimal HTTP/1.1: request heads, bodies, responses
``session``     one websocket connection: streaming, pacing, per-connection faults
``captures``    ``Capture`` loading, ``write_capture``, base64 binary frames, ``Feed``
``faults``      ``Faults``, ``ReplayStats``, ``HANDSHAKE_FAULTS``, the broken handshakes
``cli``         argparse, logging set-up, ``main``
``venues/``     one module per exchange behind the ``Venue`` contract; ``VENUES``
=============== ==========================================================================
"""

from __future__ import annotations

from ops.replay.captures import (
    Capture,
    CaptureError,
    Feed,
    Frame,
    HttpRecord,
    RecordedConnection,
    write_capture,
)
from ops.replay.cli import main
from ops.replay.faults import HANDSHAKE_FAULTS, Faults, ReplayStats
from ops.replay.server import HOST, ReplayServer, ReplayThread
from ops.replay.venues import VENUES, Venue
from ops.replay.venues.coinbase import CoinbaseTestKey

# The exchanges the replay server speaks (the order of VENUES).
EXCHANGES = tuple(VENUES)

__all__ = [
    "EXCHANGES",
    "HANDSHAKE_FAULTS",
    "HOST",
    "VENUES",
    "Capture",
    "CaptureError",
    "CoinbaseTestKey",
    "Faults",
    "Feed",
    "Frame",
    "HttpRecord",
    "RecordedConnection",
    "ReplayServer",
    "ReplayStats",
    "ReplayThread",
    "Venue",
    "main",
    "write_capture",
]
