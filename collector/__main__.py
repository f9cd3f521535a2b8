"""``python -m collector``: argparse → CollectorSettings → trio.run(app.main); sets the exit code.

``python -m collector rebuild ...`` is the other command (collector/rebuild.py).

Exit codes: 0 clean stop (SIGTERM/SIGINT), 1 crash, 2 bad input, or a subscription or a
location the exchange refused (a critical alert says why; supervisord then marks the program
FATAL after its start retries).
"""

from __future__ import annotations

from collector import signals

if __name__ == "__main__":
    signals.install()  # before the imports below: a SIGTERM from here on stops cleanly

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import NoReturn  # noqa: E402

from collector.common.alerts import (  # noqa: E402
    Alert,
    AlertSettings,
    build_alert_settings,
    configure_alerts,
    flush_alerts,
    send_alert,
)
from collector.common.config import check_path_value, ensure_writable_dir
from collector.common.errors import ConfigError, FeedError  # noqa: E402
from collector.common.logs import configure_logging  # noqa: E402
from collector.common.structloglib import structlog  # noqa: E402
from collector.config import load_config
from collector.exchanges import (
    ADAPTERS,  # noqa: E402
    EXCHANGES,
)
from collector.model import DATA_TYPES
from collector.settings import CollectorSettings, build_collector_settings

log = structlog.get_logger()


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _dir_arg(text: str) -> Path:
    """``--data_dir`` as a Path; ``""`` is refused (``Path("")`` is the current directory)."""
    try:
        return check_path_value(text, what="value")
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="collector",
        description="Record one exchange stream: raw frames and normalized rows, hourly .gz files.",
        epilog="Example: python -m collector --exchange binance --symbol BTCUSDT "
        "--data_type trade --data_dir ./data/. "
        "Rebuild parsed files from raw: python -m collector rebuild --help",
    )
    p.add_argument("--exchange", required=True, help=f"one of: {', '.join(EXCHANGES)}")
    p.add_argument(
        "--symbol",
        required=True,
        help="exchange-native symbol, e.g. BTCUSDT (binance), BTC-USD (coinbase)",
    )
    p.add_argument(
        "--data_type",
        "--data-type",
        dest="data_type",
        required=True,
        help=f"one of: {', '.join(DATA_TYPES)}",
    )
    p.add_argument(
        "--data_dir",
        "--data-dir",
        dest="data_dir",
        type=_dir_arg,
        default=None,
        help="root of the data files (default: data_dir from the config file)",
    )
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: config.toml at the repository root)",
    )
    p.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="default: info",
    )
    return p


def settings_from_args(args: argparse.Namespace) -> tuple[CollectorSettings, AlertSettings]:
    """Validate everything before anything is written; raises ConfigError naming the value."""
    config = load_config(args.config)
    settings = build_collector_settings(
        config,
        exchange=args.exchange,
        symbol=args.symbol,
        data_type=args.data_type,
        data_dir=args.data_dir,
    )
    adapter = ADAPTERS[settings.exchange]  # build_collector_settings refused any other
    if not adapter.SYMBOL_PATTERN.fullmatch(settings.symbol):
        raise ConfigError(
            f"symbol {settings.symbol!r} does not fit {settings.exchange}'s "
            f"symbol syntax ({adapter.SYMBOL_PATTERN.pattern})"
        )
    if settings.data_type not in adapter.DATA_TYPES:
        raise ConfigError(
            f"data_type {settings.data_type!r} is not available for "
            f"{settings.exchange} (choose from {', '.join(adapter.DATA_TYPES)})"
        )
    if adapter.check_spec is not None:
        adapter.check_spec(settings.stream_spec())
    alerts = build_alert_settings(config, data_dir=settings.data_dir)
    ensure_writable_dir(settings.data_dir)  # last: refused input creates nothing
    return settings, alerts


def main(argv: list[str] | None = None) -> int:
    args_in = sys.argv[1:] if argv is None else argv
    if args_in[:1] == ["rebuild"]:  # the parsed files again from raw (collector/rebuild.py)
        from collector import rebuild

        return rebuild.main(args_in[1:])
    signals.install()  # a SIGTERM from now on stops cleanly, even during start-up
    args = build_parser().parse_args(argv)
    try:
        settings, alerts = settings_from_args(args)
    except ConfigError as exc:
        print(f"collector: error: {exc}", file=sys.stderr)
        return 2
    configure_logging(args.log_level)
    configure_alerts(alerts)  # e.g. a full disk; flushed at exit
    import trio  # imported late: --help and bad input stay fast

    from collector import app

    try:
        return trio.run(app.main, settings)
    except (FeedError, ConfigError, BaseExceptionGroup) as exc:
        fatal = _find(exc, (FeedError, ConfigError))
        if fatal is None:
            raise
        log.error("collector.fatal", error=str(fatal), excerpt=getattr(fatal, "excerpt", ""))
        kind = "fatal" if isinstance(fatal, FeedError) else "error"
        if isinstance(fatal, FeedError):
            _alert_fatal(settings, str(fatal))
        print(f"collector: {kind}: {fatal}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


def _alert_fatal(s: CollectorSettings, reason: str) -> None:
    """The exchange refused us for good: say why before supervisord's retries run out (the
    same key from every retry is suppressed like any repeat)."""
    stream = f"{s.exchange} {s.symbol} {s.data_type}"
    send_alert(
        Alert(
            source="collector",
            severity="critical",
            title=f"{stream} stopped: {reason}"[:300],
            key=f"collector:{s.exchange}:{s.symbol}:{s.data_type}:fatal",
            fields={"host": s.host_id, "region": s.region or "-"},
        )
    )


def _find(exc: BaseException, types: tuple[type[BaseException], ...]) -> BaseException | None:
    """The first exception of ``types`` in ``exc``, looking inside exception groups."""
    if isinstance(exc, types):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find(inner, types)
            if found is not None:
                return found
    return None


def exit_now(code: int) -> NoReturn:
    """End the process with ``code`` once :func:`main` has returned, without the interpreter's
    teardown.

    By then every data file is written, synced and closed (the writers write unbuffered, and
    the last round closes them), status.json holds the last word and no task is left. What
    remains is the teardown (freeing every module and object one by one), measured here at
    30-60 ms of CPU per collector, which a fleet's group stop pays 100 times over on 2
    cores. Pending alert deliveries (e.g. the critical alert of a fatal stop), stdout and
    stderr are flushed first, as a normal exit would.
    """
    flush_alerts()
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    if sys.argv[1:2] == ["rebuild"]:  # a batch tool: the normal exit
        sys.exit(main())
    exit_now(main())
