"""The fleet's supervisord programs: rendered from the tracked universe, applied over XML-RPC.

    python -m ops.fleet plan [--json] [--host ID]   who collects what (per host: streams, rates)
    python -m ops.fleet render [--stdout] [--host ID]
                                            write [fleet] programs_file (supervisord includes it)
    python -m ops.fleet apply               render, then reread + update the running supervisord

Placement (ops/placement.py): with ``[fleet] hosts`` each host renders and applies only its
share of the tracked universe: every stream in ``min(replicas, allowed regions)`` regions, at
most once per region, by rendezvous hashing; where an exchange may be collected is
``[exchanges.X] regions``, else its adapter's ``EXCLUDED_REGION_PREFIXES`` (Binance: no
``us-*``). Without hosts, this host collects every tracked stream. A stream placed on no host
is a warning and an alert (render, apply) and a problem (plan: exit 1; ``ops status``).
``render --host ID`` prints another host's share (``--stdout``: the programs file is this
host's own).

The rendered file holds one ``[program:…]`` per stream of the share, all in
``[group:collector]`` (one call starts or stops hundreds: ``supervisorctl stop collector:*``),
the periodic programs of ``[fleet] periodic`` in ``[group:periodic]``, the alert listener
(``[eventlistener:alerts]``, with ``TICK_{listener_tick_s}`` when it watches quiet streams or
writes metrics), and the control socket under the data directory. The output is
deterministic (sorted, no timestamps), so two renders of one universe are byte-equal.

Nothing in the rendered file can create a section, a key or a ``%(...)s`` expansion: values are
checked against strict grammars and refused, never escaped. Program names are
``[a-z0-9][a-z0-9-]{0,99}`` (built from exchange, symbol and data type); a symbol must fit its
exchange adapter's ``SYMBOL_PATTERN`` and ``[A-Za-z0-9][A-Za-z0-9:_-]{0,63}``; paths (python,
config, directory, logs, socket) must be absolute and of ``A-Z a-z 0-9 _ . : @ + / -``;
environment values of ``A-Z a-z 0-9 _ . : @ + / -``. So a newline, ``%``, ``;``, ``#``,
``[``, ``]``, ``=``, a quote, a space or any control character is refused. Two kinds of refusal:

- a universe row that cannot be rendered (unknown exchange or data type, a symbol outside the
  grammar) is skipped with an error log and one alert naming it (repr'd), so one bad row cannot
  keep the rest of the fleet from being rendered;
- a bad path, interpreter, config path or environment value is a ``ConfigError`` for the whole
  render (exit 2, nothing written): every program would carry it.

``apply`` changes only what changed: supervisord's own ``update`` restarts a whole group when
one of its programs changes, so the collector group is updated program by program through the
``fleet.*`` namespace (ops/fleetrpc.py) and unchanged collectors keep their PIDs. When no
supervisord is listening, ``apply`` renders and says so (exit 0): ``secmaster track`` works
with or without a running fleet.

``--config`` is accepted before or after the subcommand (``python -m ops.fleet apply --config
X``), so ``[secmaster] apply_cmd`` can point it at secmaster's own config file.

Exit codes: 0 done, 1 supervisord refused a change (plan: a stream placed on no host), 2 bad
config (one line on stderr).
"""

from __future__ import annotations

import argparse
import http.client
import math
import os
import re
import socket
import sys
import time
import xmlrpc.client
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import structlog

from collector.common.alerts import Alert, send_alert
from collector.common.config import (
    Config,
    check_path_value,
    get_float,
    get_int,
    get_str,
)
from collector.common.errors import ConfigError
from collector.config import get_shutdown_timeout_s, load_config, read_exchange_regions
from collector.exchanges import ADAPTERS
from collector.exchanges.listing import shown
from ops.periodic import JOBS, STOP_GRACE_S
from ops.placement import (
    MAX_REPLICAS,
    AllowedRegions,
    Host,
    Plan,
    Stream,
    check_hosts,
    regions_for,
    single_host,
)
from ops.placement import plan as place

log = structlog.get_logger()

COLLECTOR_GROUP = "collector"
PERIODIC_GROUP = "periodic"
LISTENER_NAME = "alerts"
PERIODIC_JOBS = tuple(JOBS)  # the one job table (ops.periodic)
# What every host runs; "dataset" only on the fleet's one designated host.
DEFAULT_PERIODIC = tuple(j for j in PERIODIC_JOBS if j != "dataset")
STOPPED = ("STOPPED", "EXITED", "FATAL", "UNKNOWN")
# supervisord's TICK_* events the listener may take as its clock (quiet streams, metrics)
LISTENER_TICKS_S = (5, 60)
MAX_HOSTS = 1000
# The grammars of everything written into the generated file (see the module docstring).
PROGRAM_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")
SYMBOL_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9:_-]{0,63}")
PATH_VALUE = re.compile(r"/[A-Za-z0-9_.:@+/-]{0,4095}")
ENV_VALUE = re.compile(r"[A-Za-z0-9_.:@+/-]{0,1024}")
_HEADER = (
    "; Generated by `python -m ops.fleet render` from the tracked universe. Do not edit:\n"
    "; change the universe (`secmaster track/untrack`) or config.toml, then\n"
    "; `python -m ops.fleet apply`.\n"
)


@dataclass(frozen=True)
class FleetSettings:
    """``[fleet]`` plus the paths every rendered program needs (all absolute)."""

    config_path: Path
    base_dir: Path
    data_dir: Path
    programs_file: Path
    log_dir: Path
    socket_path: Path
    python: str
    startsecs: int = 2
    startretries: int = 3
    stopwaitsecs: int = 10
    # Longer than the grace a periodic program gives its running command after SIGTERM.
    periodic_stopwaitsecs: int = math.ceil(STOP_GRACE_S) + 10
    log_maxbytes_mb: int = 50
    log_backups: int = 5
    periodic: tuple[str, ...] = DEFAULT_PERIODIC
    listener: bool = True
    environment: dict[str, str] = field(default_factory=dict)
    # placement: empty hosts = this host alone collects every tracked stream
    host_id: str = "local"
    hosts: tuple[Host, ...] = ()
    replicas: int = 2
    exchange_regions: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # the listener's tick: quiet streams (0 = off) and the metrics textfile (None = off)
    silent_after_s: float = 300.0
    listener_tick_s: int = 60
    metrics_textfile: Path | None = None

    @property
    def server_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def listener_ticks(self) -> bool:
        """Whether the listener needs supervisord's TICK events (something to do on them)."""
        return self.silent_after_s > 0 or self.metrics_textfile is not None

    @property
    def region(self) -> str | None:
        """This host's region (None without ``[fleet] hosts``)."""
        return next((h.region for h in self.hosts if h.id == self.host_id), None)


def _value(value: object) -> str:
    """A bad config value for a one-line message (repr'd, bounded)."""
    text = repr(value)  # repr escapes every control character: always one printable line
    return text if len(text) <= 200 else text[:199] + "…"


def read_hosts(f: Mapping[str, Any], w: str) -> tuple[Host, ...]:
    """``[fleet] hosts = [{ id = "euw1-a", region = "eu-west-1" }, ...]``, checked."""
    raw = f.get("hosts", [])
    shape = 'a list of { id = "euw1-a", region = "eu-west-1" }'
    if not isinstance(raw, list):
        raise ConfigError(f"{w}: hosts = {_value(raw)} must be {shape}")
    if len(raw) > MAX_HOSTS:
        raise ConfigError(f"{w}: hosts lists {len(raw)} hosts (at most {MAX_HOSTS})")
    hosts: list[Host] = []
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict):
            raise ConfigError(f"{w}: hosts[{i}] = {_value(entry)} must be {shape}")
        unknown = sorted(k for k in entry if k not in ("id", "region"))
        if unknown:
            raise ConfigError(f"{w}: hosts[{i}]: unknown key {shown(unknown[0])} (id, region)")
        host_id, region = entry.get("id"), entry.get("region")
        if not isinstance(host_id, str) or not isinstance(region, str):
            raise ConfigError(f"{w}: hosts[{i}] = {_value(entry)} needs id and region strings")
        hosts.append(Host(host_id, region))
    check_hosts(hosts, where=f"{w} hosts")
    return tuple(hosts)


def _metrics_textfile(config: Config, f: Mapping[str, Any], w: str) -> Path | None:
    value = get_str(f, "metrics_textfile", "", where=w)
    if not value:
        return None
    path = config.resolve_path(str(check_path_value(value, what=f"{w}: metrics_textfile")))
    if not path.name.endswith(".prom") or not path.name.isprintable():
        raise ConfigError(
            f"{w}: metrics_textfile = {shown(value)} must name a *.prom file (node_exporter's "
            "textfile collector reads only those)"
        )
    return path


def _own_host_listed(config: Config, hosts: Sequence[Host]) -> str:
    """``host_id``, which must be one of ``[fleet] hosts`` when hosts are listed."""
    host_id = config.host_id
    if hosts and host_id not in {h.id for h in hosts}:
        ids = ", ".join(h.id for h in hosts[:10]) + (", ..." if len(hosts) > 10 else "")
        raise ConfigError(
            f"{config.path}: host_id {shown(host_id)} is not one of [fleet] hosts ({ids})"
        )
    return host_id


def build_fleet_settings(
    config: Config, *, python: str | None = None, own_host: bool = True
) -> FleetSettings:
    """Read ``[fleet]``; raises ConfigError naming the bad value.

    ``own_host=False`` (``ops status --fleet``, e.g. on an operator's laptop) does not ask
    ``host_id`` to be one of ``[fleet] hosts``.
    """
    w = f"{config.path} [fleet]"
    f = config.section("fleet")
    data_dir = config.data_dir
    sock = get_str(f, "socket", "", where=w)
    socket_path = config.resolve_path(sock) if sock else data_dir / "supervisor.sock"
    if len(str(socket_path)) > 100:
        raise ConfigError(
            f"{w}: socket path {str(socket_path)!r} is longer than 100 bytes "
            "(unix socket limit); set [fleet] socket to a shorter path"
        )
    periodic = f.get("periodic", list(DEFAULT_PERIODIC))
    if not isinstance(periodic, list) or any(p not in PERIODIC_JOBS for p in periodic):
        raise ConfigError(f"{w}: periodic = {periodic!r} must be a list of {PERIODIC_JOBS}")
    listener = f.get("listener", True)
    if not isinstance(listener, bool):
        raise ConfigError(f"{w}: listener = {listener!r} must be true or false")
    env = f.get("environment", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and re.fullmatch(r"[A-Z_][A-Z0-9_]*", k) and isinstance(v, str)
        for k, v in env.items()
    ):
        raise ConfigError(f'{w}: environment = {env!r} must be a table of NAME = "value"')
    shutdown_s = get_shutdown_timeout_s(config)  # the collector's own value and default
    hosts = read_hosts(f, w)
    return FleetSettings(
        config_path=config.path,
        base_dir=config.base_dir,
        data_dir=data_dir,
        programs_file=config.resolve_path(
            get_str(f, "programs_file", "var/supervisor/programs.conf", where=w)
        ),
        log_dir=config.resolve_path(get_str(f, "log_dir", "var/log", where=w)),
        socket_path=socket_path,
        python=python or sys.executable,
        startsecs=get_int(f, "startsecs", 2, where=w, min_value=0, max_value=60),
        startretries=get_int(f, "startretries", 3, where=w, min_value=0, max_value=100),
        # Longer than the collector's own shutdown bound, so files are always finalised.
        stopwaitsecs=math.ceil(shutdown_s) + 5,
        log_maxbytes_mb=get_int(f, "log_maxbytes_mb", 50, where=w, min_value=1),
        log_backups=get_int(f, "log_backups", 5, where=w, min_value=0, max_value=100),
        periodic=tuple(p for p in PERIODIC_JOBS if p in periodic),
        listener=listener,
        environment=dict(sorted(env.items())),
        host_id=_own_host_listed(config, hosts) if own_host else config.host_id,
        hosts=hosts,
        replicas=get_int(f, "replicas", 2, where=w, min_value=1, max_value=MAX_REPLICAS),
        exchange_regions=read_exchange_regions(config),
        silent_after_s=get_float(f, "silent_after_s", 300.0, where=w, min_value=0.0),
        listener_tick_s=get_int(f, "listener_tick_s", 60, where=w, choices=LISTENER_TICKS_S),
        metrics_textfile=_metrics_textfile(config, f, w),
    )


# --- rendering ---------------------------------------------------------------------------


def program_name(exchange: str, symbol: str, data_type: str) -> str:
    """A supervisor-safe program name: ``binance-btcusdt-book``, ``coinbase-btc-usd-trade``."""
    sym = re.sub(r"[^a-z0-9]+", "-", symbol.lower()).strip("-")
    return f"{exchange}-{sym}-{data_type}"


def stream_error(exchange: str, symbol: str, data_type: str) -> str | None:
    """Why a universe row cannot be rendered (one line, values repr'd), or None if it can."""
    adapter = ADAPTERS.get(exchange)
    if adapter is None:
        return f"unknown exchange {shown(exchange)}"
    if data_type not in adapter.DATA_TYPES:
        return f"{exchange}: data type {shown(data_type)} is not collected there"
    if not (adapter.SYMBOL_PATTERN.fullmatch(symbol) and SYMBOL_VALUE.fullmatch(symbol)):
        return f"{exchange}: symbol {shown(symbol)} does not fit the symbol grammar"
    name = program_name(exchange, symbol, data_type)
    if not PROGRAM_NAME.fullmatch(name):
        return f"{exchange}: program name {shown(name)} does not fit {PROGRAM_NAME.pattern}"
    return None


def renderable(
    streams: Sequence[tuple[str, str, str]],
) -> tuple[list[tuple[str, str, str]], list[str]]:
    """Split streams into those that can be rendered and the reasons for those that cannot."""
    ok: list[tuple[str, str, str]] = []
    refused: list[str] = []
    for stream in streams:
        error = stream_error(*stream)
        if error is None:
            ok.append(stream)
        else:
            refused.append(error)
    return ok, refused


def report_refused(refused: Sequence[str]) -> None:
    """Log and alert the universe rows left out of a render (one alert per render)."""
    if not refused:
        return
    log.error("fleet.stream_refused", count=len(refused), reasons=list(refused[:50]))
    send_alert(
        Alert(
            source="fleet",
            severity="error",
            title=f"{len(refused)} tracked stream(s) refused: not rendered, not collected",
            key="fleet:stream-refused",
            fields={"reason": refused[0], "count": str(len(refused))},
        )
    )


def _path(what: str, value: str | Path) -> str:
    """A path for the generated file, or ConfigError naming the setting and the value."""
    text = str(value)
    if not PATH_VALUE.fullmatch(text):
        raise ConfigError(
            f"{what} {text!r} cannot go into the supervisord programs: a path must be "
            "absolute and of A-Z a-z 0-9 _ . : @ + / - only (no space, %, ;, #, =, quotes, "
            "brackets or control characters)"
        )
    return text


def _command(s: FleetSettings, *args: str) -> str:
    # Every word is checked by the caller (paths, fixed words, or a symbol of SYMBOL_VALUE),
    # so none needs quoting and none can hold a newline or a %.
    return " ".join((_path("python", s.python), *args))


def _logs(s: FleetSettings, name: str, *, stdout: bool = True) -> list[str]:
    mb, backups = s.log_maxbytes_mb, s.log_backups
    out = []
    if stdout:
        out += [
            f"stdout_logfile = {_path('[fleet] log_dir', s.log_dir / f'{name}.out.log')}",
            "stdout_logfile_maxbytes = 1MB",
            "stdout_logfile_backups = 1",
        ]
    out += [
        f"stderr_logfile = {_path('[fleet] log_dir', s.log_dir / f'{name}.err.log')}",
        f"stderr_logfile_maxbytes = {mb}MB",
        f"stderr_logfile_backups = {backups}",
    ]
    return out


def _environment(s: FleetSettings) -> list[str]:
    if not s.environment:
        return []
    for k, v in s.environment.items():
        if not (re.fullmatch(r"[A-Z_][A-Z0-9_]{0,63}", k) and ENV_VALUE.fullmatch(v)):
            raise ConfigError(
                f"[fleet] environment {k!r} = {v!r} cannot go into the supervisord "
                "programs: values are A-Z a-z 0-9 _ . : @ + / - only"
            )
    pairs = ",".join(f'{k}="{v}"' for k, v in s.environment.items())
    return [f"environment = {pairs}"]


def check_settings(s: FleetSettings) -> None:
    """Every setting that goes into the generated file fits its grammar, or ConfigError."""
    _path("python", s.python)
    _path("config file", s.config_path)
    _path("config directory", s.base_dir)
    _path("[fleet] socket", s.socket_path)
    _path("[fleet] log_dir", s.log_dir)
    _environment(s)


def _program_names(streams: Sequence[tuple[str, str, str]]) -> dict[str, tuple[str, str, str]]:
    """Program name → stream, sorted; two streams with one name or a stream outside the
    grammar raise ConfigError."""
    names: dict[str, tuple[str, str, str]] = {}
    for stream in sorted(set(streams)):
        name = program_name(*stream)
        if name in names:
            raise ConfigError(
                f"streams {shown(':'.join(names[name]))} and {shown(':'.join(stream))} "
                f"map to one program name {shown(name)}"
            )
        names[name] = stream
    for stream in names.values():
        error = stream_error(*stream)
        if error is not None:
            raise ConfigError(f"stream {shown(':'.join(stream))}: {error}")
    return names


def _program(
    s: FleetSettings,
    name: str,
    command: str,
    *,
    startsecs: int,
    startretries: int,
    stopwaitsecs: int,
    log_dir: str,
) -> list[str]:
    """One ``[program:x]`` section: supervised, restarted, stopped with its process group."""
    return [
        f"[program:{name}]",
        f"command = {command}",
        f"directory = {_path('config directory', s.base_dir)}",
        "autostart = true",
        "autorestart = true",
        f"startsecs = {startsecs}",
        f"startretries = {startretries}",
        "stopsignal = TERM",
        f"stopwaitsecs = {stopwaitsecs}",
        "stopasgroup = true",
        "killasgroup = true",
        *_environment(s),
        *_logs(s, f"{log_dir}/{name}"),
        "",
    ]


def render_programs(s: FleetSettings, streams: Sequence[tuple[str, str, str]]) -> str:
    """The generated supervisord file for ``streams`` (pure, deterministic).

    Raises:
        ConfigError: a stream that cannot be rendered (filter with :func:`renderable` first),
            two streams with one program name, or a setting outside its grammar.
    """
    names = _program_names(streams)
    cfg = _path("config file", s.config_path)
    directory = _path("config directory", s.base_dir)
    lines = [
        _HEADER,
        "; The control socket lives under the data directory (overrides supervisord.conf).",
        "[unix_http_server]",
        f"file = {_path('[fleet] socket', s.socket_path)}",
        "chmod = 0700",
        "",
    ]
    for name, (exchange, symbol, data_type) in names.items():
        argv = ("--exchange", exchange, "--symbol", symbol, "--data_type", data_type)
        lines += _program(
            s,
            name,
            _command(s, "-m", "collector", *argv, "--config", cfg),
            startsecs=s.startsecs,
            startretries=s.startretries,
            stopwaitsecs=s.stopwaitsecs,
            log_dir="collector",
        )
    if names:
        lines += [f"[group:{COLLECTOR_GROUP}]", f"programs = {','.join(names)}", ""]
    for job in s.periodic:
        lines += _program(
            s,
            job,
            _command(s, "-m", "ops.periodic", job, "--config", cfg),
            startsecs=1,
            startretries=3,
            stopwaitsecs=s.periodic_stopwaitsecs,
            log_dir="periodic",
        )
    if s.periodic:
        lines += [f"[group:{PERIODIC_GROUP}]", f"programs = {','.join(s.periodic)}", ""]
    if s.listener:
        lines += [
            f"[eventlistener:{LISTENER_NAME}]",
            "command = " + _command(s, "-m", "ops.listener", "--config", cfg),
            f"directory = {directory}",
            "events = PROCESS_STATE_EXITED,PROCESS_STATE_FATAL,PROCESS_STATE_BACKOFF,"
            "PROCESS_STATE_RUNNING" + (f",TICK_{s.listener_tick_s}" if s.listener_ticks else ""),
            "buffer_size = 1024",
            "autostart = true",
            "autorestart = true",
            "startsecs = 1",
            "stopwaitsecs = 10",
            *_environment(s),
            *_logs(s, f"listener/{LISTENER_NAME}", stdout=False),
            "",
        ]
    return "\n".join(lines)


def tracked_streams(config: Config) -> list[tuple[str, str, str]]:
    """The tracked universe (secmaster), imported lazily: it loads SQLModel."""
    from secmaster.universe import tracked_streams as universe

    return universe(config)


# --- placement: this host's share ---------------------------------------------------------


def allowed_regions(s: FleetSettings) -> AllowedRegions:
    """Where each exchange may be collected: ``[exchanges.X] regions``, else the adapter's
    excluded region prefixes."""
    defaults = {name: a.EXCLUDED_REGION_PREFIXES for name, a in ADAPTERS.items()}
    return regions_for(s.exchange_regions, defaults)


def fleet_plan(s: FleetSettings, streams: Sequence[Stream]) -> Plan:
    """Who collects what: placement over ``[fleet] hosts``, or this host alone."""
    if not s.hosts:
        return single_host(streams, s.host_id)
    return place(streams, s.hosts, replicas=s.replicas, allowed_regions=allowed_regions(s))


def tracked_plan(config: Config, s: FleetSettings) -> Plan:
    """The plan of the tracked universe (rows that cannot be rendered are reported, left out)."""
    streams, refused = renderable(tracked_streams(config))
    report_refused(refused)
    return fleet_plan(s, streams)


def check_host(s: FleetSettings, host: str) -> str:
    """``host`` if the fleet has it, else ConfigError listing the hosts."""
    ids = [h.id for h in s.hosts] or [s.host_id]
    if host not in ids:
        listed = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        raise ConfigError(f"host {shown(host)} is not one of [fleet] hosts ({listed})")
    return host


def report_unplaced(p: Plan) -> None:
    """A tracked stream that no host collects: a warning and one alert (never silent)."""
    if not p.unplaced:
        return
    names = [":".join(st) for st in p.unplaced]
    first = p.unplaced_reasons.get(p.unplaced[0], "")
    log.warning("fleet.unplaced", count=len(names), streams=names[:50], reason=first)
    send_alert(
        Alert(
            source="fleet",
            severity="error",
            title=f"{len(names)} tracked stream(s) placed on no host: not collected anywhere",
            key="fleet:unplaced",
            fields={"streams": ", ".join(names[:10]), "count": str(len(names)), "reason": first},
        )
    )


def render_text(config: Config, s: FleetSettings, *, host: str | None = None) -> str:
    """The programs file of ``host``'s share (default this host's) of the tracked universe;
    rows that cannot be rendered and streams placed nowhere are reported.

    The settings are checked before the universe is read, so a bad one touches nothing.
    """
    check_settings(s)
    host = check_host(s, host or s.host_id)
    p = tracked_plan(config, s)
    report_unplaced(p)
    return render_programs(s, p.by_host[host])


def render(config: Config, *, python: str | None = None) -> tuple[Path, bool]:
    """Write the programs file of this host's share; returns (path, changed)."""
    s = build_fleet_settings(config, python=python)
    text = render_text(config, s)
    for sub in ("collector", "periodic", "listener"):
        (s.log_dir / sub).mkdir(parents=True, exist_ok=True)
    s.socket_path.parent.mkdir(parents=True, exist_ok=True)
    path = s.programs_file
    try:
        changed = path.read_text(encoding="utf-8") != text
    except FileNotFoundError:
        changed = True
    if changed:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    log.info("fleet.rendered", file=str(path), changed=changed, programs=text.count("[program:"))
    return path, changed


# --- talking to supervisord --------------------------------------------------------------


class _UnixHTTPConnection(http.client.HTTPConnection):
    """HTTP over a unix socket; every socket operation (connect too) bounded by ``timeout``."""

    def __init__(self, socket_path: str, timeout_s: float) -> None:
        # The host only fills the Host header: supervisord serves any name on its socket.
        super().__init__("localhost", timeout=timeout_s)
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.socket_path)
        except BaseException:
            sock.close()
            raise
        self.sock = sock


class UnixTransport(xmlrpc.client.Transport):
    """An XML-RPC transport to supervisord's unix socket with a socket timeout.

    Neither supervisor's ``SupervisorTransport`` nor ``childutils.getRPCInterface`` takes a
    timeout, so a wedged supervisord would hang the caller; this overrides
    ``make_connection`` the way the ``xmlrpc.client`` documentation's ``ProxiedTransport``
    example does, keeping the standard transport's persistent connection.
    """

    def __init__(self, socket_path: Path | str, timeout_s: float) -> None:
        super().__init__()
        self.socket_path = os.fspath(socket_path)
        self.timeout_s = timeout_s

    def make_connection(self, host: Any) -> http.client.HTTPConnection:
        if self._connection[1] is not None and self._connection[0] == host:
            return self._connection[1]
        conn = _UnixHTTPConnection(self.socket_path, self.timeout_s)
        self._connection = host, conn
        return conn


def connect(socket_path: Path | str, *, timeout_s: float = 30.0) -> Any:
    """XML-RPC over supervisord's unix socket: ``proxy.supervisor.*``, ``proxy.fleet.*``.

    A call that gets no answer within ``timeout_s`` raises ``TimeoutError``; ``proxy("close")()``
    closes the connection.
    """
    return xmlrpc.client.ServerProxy(
        "http://127.0.0.1", transport=UnixTransport(socket_path, timeout_s)
    )


def is_running(socket_path: Path | str) -> bool:
    """True when a supervisord answers on the socket."""
    if not Path(socket_path).exists():
        return False
    rpc = connect(socket_path, timeout_s=5.0)
    try:
        state = rpc.supervisor.getState()
    except (OSError, xmlrpc.client.Error):
        return False
    finally:
        rpc("close")()
    return bool(state.get("statename") == "RUNNING")


@dataclass
class ApplyResult:
    running: bool = False
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _wait_stopped(rpc: Any, names: Sequence[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    todo = set(names)
    while todo and time.monotonic() < deadline:
        infos = {f"{i['group']}:{i['name']}": i for i in rpc.supervisor.getAllProcessInfo()}
        todo = {n for n in todo if n in infos and infos[n]["statename"] not in STOPPED}
        if todo:
            time.sleep(0.1)
    if todo:
        raise RuntimeError(f"programs did not stop within {timeout_s:.0f} s: {sorted(todo)}")


def _stop_many(rpc: Any, names: Sequence[str], timeout_s: float) -> None:
    """Stop programs (``group:name``) in one multicall, then wait until they are down."""
    if not names:
        return
    calls = [{"methodName": "supervisor.stopProcess", "params": [n, False]} for n in names]
    for name, res in zip(names, rpc.system.multicall(calls), strict=True):
        if isinstance(res, dict) and res.get("faultString", "").split(":")[0] not in (
            "NOT_RUNNING",
            "",
        ):
            raise RuntimeError(f"cannot stop {name}: {res['faultString']}")
    _wait_stopped(rpc, names, timeout_s)


def _update_groups(
    rpc: Any, s: FleetSettings, added: list[str], changed: list[str], removed: list[str]
) -> ApplyResult:
    result = ApplyResult(running=True)
    wait_s = max(s.stopwaitsecs, s.periodic_stopwaitsecs) + 5.0
    for group in removed:
        names = [
            f"{group}:{i['name']}"
            for i in rpc.supervisor.getAllProcessInfo()
            if i["group"] == group
        ]
        _stop_many(rpc, names, wait_s)
        rpc.supervisor.removeProcessGroup(group)
        result.removed += names
    for group in changed:
        if group == COLLECTOR_GROUP:
            diff = rpc.fleet.diffGroup(group)
            gone = diff["removed"] + diff["changed"]
            _stop_many(rpc, [f"{group}:{n}" for n in gone], wait_s)
            for name in gone:
                rpc.fleet.removeProcess(group, name)
            for name in diff["changed"] + diff["added"]:
                rpc.fleet.addProcess(group, name)
            result.removed += [f"{group}:{n}" for n in diff["removed"]]
            result.changed += [f"{group}:{n}" for n in diff["changed"]]
            result.added += [f"{group}:{n}" for n in diff["added"]]
            continue
        names = [
            f"{group}:{i['name']}"
            for i in rpc.supervisor.getAllProcessInfo()
            if i["group"] == group
        ]
        _stop_many(rpc, names, wait_s)
        rpc.supervisor.removeProcessGroup(group)
        rpc.supervisor.addProcessGroup(group)
        result.changed.append(group)
    for group in added:
        rpc.supervisor.addProcessGroup(group)
        result.added.append(group)
    return result


def apply(config: Config, *, python: str | None = None) -> ApplyResult:
    """Render, then (if supervisord runs) reread and start/stop only the changed programs."""
    s = build_fleet_settings(config, python=python)
    render(config, python=python)
    if not is_running(s.socket_path):
        log.info("fleet.apply.no_supervisord", socket=str(s.socket_path))
        return ApplyResult(running=False)
    rpc = connect(s.socket_path, timeout_s=60.0)
    try:
        [[added, changed, removed]] = rpc.supervisor.reloadConfig()
        result = _update_groups(rpc, s, added, changed, removed)
    finally:
        rpc("close")()
    log.info(
        "fleet.applied",
        added=result.added,
        changed=result.changed,
        removed=result.removed,
    )
    return result


def print_plan(config: Config, *, as_json: bool, host: str | None) -> int:
    """``ops.fleet plan``: the report on stdout; 1 when a stream is placed on no host."""
    from ops.fleetplan import build_report
    from ops.fleetplan import render_json as plan_json
    from ops.fleetplan import render_text as plan_text

    s = build_fleet_settings(config)
    if host is not None:
        check_host(s, host)
    p = tracked_plan(config, s)
    hosts = s.hosts or (Host(s.host_id, "-"),)
    report = build_report(s.host_id, hosts, p, s.data_dir)
    sys.stdout.write(plan_json(report, host) if as_json else plan_text(report, host))
    return 0 if report.ok else 1


# --- CLI ---------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m ops.fleet", description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=None, help="config file (default: root)")
    p.add_argument("--log-level", default="info")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    pl = sub.add_parser("plan", help="who collects what: per host its streams and frame rates")
    pl.add_argument("--json", action="store_true", help="machine-readable output")
    pl.add_argument("--host", default=None, help="only this host's share")
    r = sub.add_parser("render", help="write the generated supervisord programs file")
    r.add_argument("--stdout", action="store_true", help="print it instead of writing it")
    r.add_argument(
        "--host",
        default=None,
        help="render this host's share (default: host_id); another host's needs --stdout",
    )
    a = sub.add_parser("apply", help="render, then reread + update the running supervisord")
    for sp in (pl, r, a):
        # A separate dest: the subcommand's default must not overwrite a --config given before.
        sp.add_argument("--config", dest="sub_config", type=Path, default=None, help="same")
    return p


def config_path(args: argparse.Namespace) -> Path | None:
    """``--config`` from before or after the subcommand; both given must name one file."""
    top: Path | None = args.config
    after: Path | None = args.sub_config
    if top is not None and after is not None and top.resolve() != after.resolve():
        raise ConfigError(
            f"--config given twice with different files: {str(top)!r}, {str(after)!r}"
        )
    return after if after is not None else top


def main(argv: Sequence[str] | None = None) -> int:
    from collector.common.alerts import build_alert_settings, configure_alerts, flush_alerts
    from collector.common.logs import configure_logging

    args = _parser().parse_args(argv)
    configure_logging(args.log_level)
    try:
        config = load_config(config_path(args))
        configure_alerts(build_alert_settings(config))
        if args.command == "plan":
            return print_plan(config, as_json=args.json, host=args.host)
        host = args.host if args.command == "render" else None
        if args.command == "render" and (args.stdout or host is not None):
            s = build_fleet_settings(config)
            if host is not None and host != s.host_id and not args.stdout:
                raise ConfigError(
                    f"--host {shown(host)} is not this host ({s.host_id}): its share goes to "
                    "stdout only (add --stdout); the programs file is this host's own"
                )
            if args.stdout:
                sys.stdout.write(render_text(config, s, host=host))
                return 0
        command: Callable[[Config], object] = render if args.command == "render" else apply
        command(config)
    except ConfigError as exc:
        print(f"ops.fleet: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, xmlrpc.client.Error) as exc:
        log.error("fleet.apply.failed", error=str(exc))
        print(f"ops.fleet: {args.command} failed: {exc}", file=sys.stderr)
        return 1
    finally:
        flush_alerts()
    return 0


if __name__ == "__main__":
    sys.exit(main())
