"""The fleet's supervisord event listener: a program that dies or cannot start → an alert;
on every tick, quiet streams and the metrics textfile.

    [eventlistener:alerts]   command = python -m ops.listener --config PATH
    events = PROCESS_STATE_EXITED,PROCESS_STATE_FATAL,PROCESS_STATE_BACKOFF,PROCESS_STATE_RUNNING,
             TICK_60     (TICK_{[fleet] listener_tick_s}; only when there is work for a tick)

Speaks supervisord's listener protocol exactly: ``READY`` on stdout, one header line plus
``len`` bytes of payload on stdin, then ``RESULT 2\\nOK``, and nothing else ever goes to
stdout (logs go to stderr, and ``print`` is redirected there too). Every event is answered
``OK`` whatever happens while handling it, so a failing alert sink never stalls supervisord's
event queue and never kills the listener.

Alerts (collector.common.alerts, key ``fleet:{group}:{program}``, so repeats are suppressed there):

- ``PROCESS_STATE_EXITED`` with ``expected:0`` (a crash, ``kill -9``): error;
- ``PROCESS_STATE_BACKOFF`` (it exited before ``startsecs``; supervisord retries): warning;
- ``PROCESS_STATE_FATAL`` (it gave up after ``startretries``): critical;
- ``PROCESS_STATE_RUNNING`` of a program alerted on before: a resolve.

Each alert names the program and carries the tail of its stderr log (read over XML-RPC from
the supervisord that runs the listener, ``SUPERVISOR_SERVER_URL``).

A ``TICK_*`` event runs one round of :class:`ops.watch.HostWatch`: a RUNNING collector without
a frame for ``[fleet] silent_after_s`` raises one alert naming host, exchange, symbol and data
type, and a resolve when frames come again; ``[fleet] metrics_textfile`` is rewritten.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import structlog

from collector.common.alerts import Alert, send_alert

if TYPE_CHECKING:
    from collector.common.config import Config
    from ops.watch import HostWatch

log = structlog.get_logger()

TAIL_BYTES = 4000
TAIL_LINES = 3
TAIL_CHARS = 300
SEVERITY = {
    "PROCESS_STATE_EXITED": "error",
    "PROCESS_STATE_BACKOFF": "warning",
    "PROCESS_STATE_FATAL": "critical",
}
TITLE = {
    "PROCESS_STATE_EXITED": "exited unexpectedly",
    "PROCESS_STATE_BACKOFF": "exited during start (supervisord retries)",
    "PROCESS_STATE_FATAL": "could not be started: FATAL, supervisord gave up",
}


def parse_tokens(line: str) -> dict[str, str]:
    """``a:1 b:2`` → ``{"a": "1", "b": "2"}`` (supervisor's header and payload format)."""
    out: dict[str, str] = {}
    for token in line.split():
        key, _, value = token.partition(":")
        out[key] = value
    return out


def stderr_tail(program: str, server_url: str | None) -> str:
    """The last bytes of ``program``'s stderr log, or why they are unavailable."""
    if not server_url or not server_url.startswith("unix://"):
        return "(no SUPERVISOR_SERVER_URL)"
    from ops.fleet import connect

    rpc = connect(server_url[len("unix://") :], timeout_s=5.0)
    try:
        text, _offset, _overflow = rpc.supervisor.tailProcessStderrLog(program, 0, TAIL_BYTES)
    except Exception as exc:  # a tail is a nicety: never fail the event for it
        return f"(stderr log unavailable: {type(exc).__name__}: {exc})"
    finally:
        rpc("close")()
    return str(text)


def short_tail(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    tail = " ⏎ ".join(lines[-TAIL_LINES:])
    return tail if len(tail) <= TAIL_CHARS else "…" + tail[-(TAIL_CHARS - 1) :]


class Listener:
    """Turns events into alerts; ``tail`` reads a program's stderr tail (injectable seam)."""

    def __init__(
        self,
        host_id: str,
        tail: Callable[[str], str],
        tick: Callable[[], object] | None = None,
    ) -> None:
        self.host_id = host_id
        self.tail = tail
        self.tick = tick
        self.alerted: set[str] = set()

    def handle(self, eventname: str, payload: str) -> Alert | None:
        if eventname.startswith("TICK_"):
            if self.tick is not None:
                self.tick()
            return None
        body = parse_tokens(payload.split("\n", 1)[0])
        name, group = body.get("processname", "?"), body.get("groupname", "?")
        program = name if group == name else f"{group}:{name}"
        key = f"fleet:{group}:{name}"
        if eventname == "PROCESS_STATE_RUNNING":
            if program not in self.alerted:
                return None
            self.alerted.discard(program)
            alert = Alert(
                "listener",
                "info",
                f"{program} is running again",
                key,
                {"host": self.host_id, "program": program, "pid": body.get("pid", "")},
                resolve=True,
            )
        elif eventname in SEVERITY:
            if eventname == "PROCESS_STATE_EXITED" and body.get("expected") == "1":
                return None
            full = self.tail(program)
            log.error(
                "listener.program_down",
                program=program,
                state=eventname.removeprefix("PROCESS_STATE_"),
                from_state=body.get("from_state"),
                pid=body.get("pid"),
                stderr_tail=full[-2000:],
            )
            fields = {
                "host": self.host_id,
                "program": program,
                "from_state": body.get("from_state", ""),
            }
            if "pid" in body:
                fields["pid"] = body["pid"]
            fields["stderr_tail"] = short_tail(full)
            alert = Alert(
                "listener", SEVERITY[eventname], f"{program} {TITLE[eventname]}", key, fields
            )
            self.alerted.add(program)
        else:
            return None
        try:
            send_alert(alert)
        except Exception:  # send_alert never raises; belt and braces for the protocol
            log.exception("listener.alert_failed", program=program)
        return alert


def serve(listener: Listener, stdin: BinaryIO, stdout: BinaryIO) -> None:
    """The protocol loop; returns at end of input."""
    while True:
        stdout.write(b"READY\n")
        stdout.flush()
        header_line = stdin.readline()
        if not header_line:
            return
        headers = parse_tokens(header_line.decode("utf-8", "replace"))
        length = int(headers.get("len", "0") or 0)
        payload = stdin.read(length) if length else b""
        try:
            listener.handle(headers.get("eventname", ""), payload.decode("utf-8", "replace"))
        except Exception:
            log.exception("listener.event_failed", header=header_line.decode(errors="replace"))
        stdout.write(b"RESULT 2\nOK")
        stdout.flush()


def _host_watch(config: Config, server_url: str | None) -> HostWatch:
    """The tick's work, from ``[fleet]``; supervisord's socket is the one this listener was
    started by (``SUPERVISOR_SERVER_URL``), else the config's."""
    from ops.fleet import build_fleet_settings
    from ops.watch import HostWatch

    s = build_fleet_settings(config)
    socket_path = s.socket_path
    if server_url and server_url.startswith("unix://"):
        socket_path = Path(server_url[len("unix://") :])
    return HostWatch(
        data_dir=s.data_dir,
        host_id=s.host_id,
        socket_path=socket_path,
        silent_after_s=s.silent_after_s,
        metrics_textfile=s.metrics_textfile,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from collector.common.alerts import build_alert_settings, configure_alerts, flush_alerts
    from collector.common.config import redact_url
    from collector.common.errors import ConfigError
    from collector.common.logs import configure_logging
    from collector.config import load_config

    p = argparse.ArgumentParser(prog="python -m ops.listener", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    p.add_argument("--log-level", default="info")
    args = p.parse_args(argv)
    # The protocol owns fd 1; anything printed by mistake goes to stderr instead.
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    configure_logging(args.log_level, stream=sys.stderr)
    host_id = "local"
    server_url = os.environ.get("SUPERVISOR_SERVER_URL")
    tick: Callable[[], object] | None = None
    try:
        config = load_config(args.config)
        host_id = config.host_id
        configure_alerts(build_alert_settings(config))
        tick = _host_watch(config, server_url).tick
    except ConfigError as exc:  # keep listening: the alerts still go to the log
        log.error("listener.config_unusable", error=str(exc))
    listener = Listener(host_id, lambda program: stderr_tail(program, server_url), tick)
    log.info("listener.started", server_url=redact_url(server_url) if server_url else None)
    try:
        serve(listener, sys.stdin.buffer, proto_out)
    finally:
        flush_alerts()
    return 0


if __name__ == "__main__":
    sys.exit(main())
