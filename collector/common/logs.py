"""structlog set-up shared by every entry point of every package.

JSON lines on stderr when stderr is not a TTY (supervisord captures and rotates them),
a readable console otherwise. Stdlib loggers (httpx, botocore) go through the same chain.

Tracebacks never carry local variables: structlog's default ``dict_tracebacks`` renders the
locals of every frame, and those hold credentials (a signing secret, a webhook URL, a bot
token in a request URL) that must never reach a log line.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

from collector.common.structloglib import structlog


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Binding the stream object once (at configure time) breaks when it is later replaced and
    closed (test runners capture stderr per test; daemons redirect it).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _CurrentStderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stdlib handler that always writes to the current ``sys.stderr``."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def configure_logging(
    level: str = "info", *, stream: TextIO | None = None, json: bool | None = None
) -> None:
    """Configure structlog and stdlib logging once per process.

    Args:
        level: minimum level name.
        stream: where log lines go (default stderr).
        json: force JSON (True) or console (False) output; default: JSON unless a TTY.
    """
    out: Any = stream if stream is not None else _CurrentStderr()
    use_json = (not out.isatty()) if json is None else json
    levelno = _LEVELS.get(level.lower(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        renderer = structlog.processors.JSONRenderer()
        shared_tail: list[Any] = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
    else:
        # plain tracebacks: rich's (the default when installed) would show the locals too
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
        shared_tail = []
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *shared_tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out) if stream is not None else _CurrentStderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *shared_tail,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(levelno)
    for noisy in (
        "httpx",
        "httpcore",
        "botocore",
        "boto3",
        "s3transfer",
        "urllib3",
        "trio-websocket",
        "werkzeug",
    ):
        logging.getLogger(noisy).setLevel(max(levelno, logging.WARNING))
