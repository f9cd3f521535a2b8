"""structlog set-up shared by every entry point of every package.

JSON lines on stderr when stderr is not a TTY (supervisord captures and rotates them),
a readable console otherwise. Stdlib loggers (httpx, botocore) go through the same chain.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

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
    out = stream if stream is not None else sys.stderr
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
        shared_tail: list[Any] = [structlog.processors.dict_tracebacks]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        shared_tail = []
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *shared_tail, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
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
