"""``python -m ops.replay`` (console script ``replay``): argparse, logging, run until a signal.

Exit codes: 0 after SIGTERM/SIGINT, 2 for a bad flag, an unreadable capture or a port that
cannot be bound. Logs are structlog lines on stderr: JSON unless stderr is a TTY, as every
program of the fleet (the set-up is the package's own: the replay server imports nothing of
the collector).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog
import trio

from ops.replay.captures import Capture, CaptureError
from ops.replay.faults import HANDSHAKE_FAULTS, Faults
from ops.replay.server import HOST, ReplayServer
from ops.replay.venues import VENUES

log = structlog.get_logger()


def configure_logging(level: str) -> None:
    """structlog and stdlib logging to stderr: JSON lines unless stderr is a TTY; tracebacks
    never carry local variables (a test key's secret may be one)."""
    levelno = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[Any] = []
    renderer: Any = structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )
    if not sys.stderr.isatty():
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        tail = [structlog.processors.ExceptionRenderer(transformer)]
        renderer = structlog.processors.JSONRenderer()
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    # stdlib loggers (trio-websocket's warnings) in the same format
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *tail,
                renderer,
            ],
        )
    )
    logging.basicConfig(handlers=[handler], level=max(levelno, logging.WARNING), force=True)


def _build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ops.replay",
        description="Serve exchange captures (REST + websocket) on 127.0.0.1.",
    )
    p.add_argument("--capture", action="append", required=True, type=Path, metavar="FILE")
    p.add_argument("--port", type=int, default=0, help="0 = any free port (logged)")
    p.add_argument("--speed", type=float, default=0.0, help="pace multiplier; 0 = max speed")
    p.add_argument("--loop", action="store_true", help="close with 1001 at the end of frames")
    for venue in VENUES.values():
        if venue.add_arguments is not None:
            venue.add_arguments(p)
    p.add_argument("--ping-interval", type=float, default=20.0, metavar="S")
    p.add_argument("--log-level", default="info")
    _add_fault_arguments(p)
    return p


def _add_fault_arguments(p: argparse.ArgumentParser) -> None:
    f = p.add_argument_group(
        "faults",
        "Websocket faults fire once per connection, after N data frames, on the next "
        "--fault-connections connections; handshake and HTTP faults on the next K requests.",
    )
    f.add_argument("--fault-connections", type=int, default=1, metavar="K", help="0 = all")
    f.add_argument(
        "--drop-after",
        type=int,
        metavar="N",
        help="cut the TCP stream after N data frames; --drop-after 0 --fault-connections 0 "
        "is a flapping server (every connection closes right after the subscription ack)",
    )
    f.add_argument("--stall-after", type=int, metavar="N")
    f.add_argument("--stall-s", type=float, default=30.0, metavar="S")
    f.add_argument("--skip-frame", type=int, action="append", default=[], metavar="K")
    f.add_argument("--garbage-after", type=int, metavar="N")
    f.add_argument("--oversized-after", type=int, metavar="N")
    f.add_argument("--oversized-bytes", type=int, default=2 * 1024 * 1024, metavar="B")
    f.add_argument("--reconnect-request-after", type=int, metavar="N")
    f.add_argument("--http-errors", type=int, default=0, metavar="K")
    f.add_argument("--http-error-status", type=int, default=429, choices=(429, 418))
    f.add_argument("--retry-after", type=int, default=1, metavar="S")
    f.add_argument("--reject-handshakes", type=int, default=0, metavar="K")
    f.add_argument("--reject-status", type=int, default=503)
    f.add_argument("--reject-retry-after", type=int, metavar="S")
    f.add_argument(
        "--bad-handshakes",
        type=int,
        default=0,
        metavar="K",
        help="answer the next K websocket handshakes with --bad-handshake",
    )
    f.add_argument(
        "--bad-handshake",
        choices=HANDSHAKE_FAULTS,
        default="hang",
        help="hang: never answer; bad_accept: 101 with a wrong Sec-WebSocket-Accept; "
        "no_upgrade: 101 without Upgrade/Connection; garbage: random bytes; "
        "close: half a 101 reply, then close (default: hang)",
    )
    f.add_argument("--nested-after", type=int, metavar="N", help="send a deeply nested JSON array")
    f.add_argument("--nested-depth", type=int, default=100_000, metavar="D")
    f.add_argument(
        "--inject",
        action=_InjectAction,
        default=[],
        metavar="N:TEXT",
        help="send TEXT as a text frame after N data frames (repeatable, in order)",
    )
    f.add_argument(
        "--inject-base64",
        action=_InjectAction,
        dest="inject",
        metavar="N:BASE64",
        help="send the decoded bytes as a binary frame after N data frames (repeatable)",
    )


Inject = tuple[tuple[int, str | bytes], ...]  # Faults.inject


class _InjectAction(argparse.Action):
    """Keeps --inject and --inject-base64 values in command-line order."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        getattr(namespace, self.dest).append((option_string, str(values)))


def _parse_inject(specs: Sequence[tuple[str, str]]) -> Inject:
    """``(flag, "N:VALUE")`` pairs as ``Faults.inject``; raises ValueError naming a bad one."""
    out: list[tuple[int, str | bytes]] = []
    for flag, spec in specs:
        after, sep, value = spec.partition(":")
        if not sep or not after.isdigit():
            raise ValueError(f"{flag} must be N:VALUE with N >= 0, got {spec[:60]!r}")
        frame: str | bytes = value
        if flag == "--inject-base64":
            try:
                frame = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{flag} value is not base64: {value[:60]!r}") from None
        out.append((int(after), frame))
    return tuple(out)


def _faults_from_args(args: argparse.Namespace, inject: Inject) -> Faults:
    return Faults(
        ws_fault_connections=args.fault_connections or None,
        drop_after=args.drop_after,
        stall_after=args.stall_after,
        stall_s=args.stall_s,
        skip_frames=tuple(args.skip_frame),
        garbage_after=args.garbage_after,
        oversized_after=args.oversized_after,
        oversized_bytes=args.oversized_bytes,
        reconnect_request_after=args.reconnect_request_after,
        http_errors=args.http_errors,
        http_error_status=args.http_error_status,
        http_retry_after_s=args.retry_after,
        reject_handshakes=args.reject_handshakes,
        reject_status=args.reject_status,
        reject_retry_after_s=args.reject_retry_after,
        bad_handshakes=args.bad_handshakes,
        bad_handshake=args.bad_handshake,
        nested_after=args.nested_after,
        nested_depth=args.nested_depth,
        inject=inject,
    )


def _check_args(args: argparse.Namespace) -> str | None:
    """The error message for a flag value argparse's types cannot refuse, or None."""
    if args.speed < 0:
        return f"--speed must be >= 0, got {args.speed}"
    if not 0 <= args.port <= 65535:
        return f"--port out of range: {args.port}"
    if not 100 <= args.reject_status <= 599:
        return f"--reject-status is not an HTTP status: {args.reject_status}"
    if args.nested_depth < 1:
        return f"--nested-depth must be >= 1, got {args.nested_depth}"
    return None


def _fail(message: str) -> int:
    print(f"ops.replay: error: {message}", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m ops.replay``; returns the exit code."""
    args = _build_parser().parse_args(argv)
    problem = _check_args(args)
    if problem is not None:
        return _fail(problem)
    options: dict[str, Any] = {}  # checked by ReplayServer against the venues' OPTIONS
    try:
        inject = _parse_inject(args.inject)
        for venue in VENUES.values():
            if venue.options_from_args is not None:
                options |= venue.options_from_args(args, os.environ)
    except ValueError as exc:
        return _fail(str(exc))
    captures: list[Capture] = []
    for path in args.capture:
        try:
            captures.append(Capture.load(path))
        except CaptureError as exc:
            return _fail(str(exc))
    faults = _faults_from_args(args, inject)
    configure_logging(args.log_level)
    server = ReplayServer(
        captures,
        speed=args.speed or None,
        loop=args.loop,
        faults=faults,
        ping_interval_s=args.ping_interval,
        **options,
    )
    try:
        trio.run(_run_until_signal, server, args.port)
    except OSError as exc:
        return _fail(f"cannot listen on {HOST}:{args.port}: {exc}")
    return 0


async def _run_until_signal(server: ReplayServer, port: int) -> None:
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            await nursery.start(server.serve, port)
            async for _ in signals:
                log.info("replay.stopping")
                nursery.cancel_scope.cancel()
                break
