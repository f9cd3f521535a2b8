"""Placement wired into the fleet (issue 21): `[fleet] hosts`/`replicas`, `[exchanges.X]
regions`, `ops.fleet plan`, `render --host` and `apply` of this host's share."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from collector.common import layout
from collector.common.errors import ConfigError
from collector.config import load_config
from ops.fleet import build_fleet_settings, fleet_plan, program_name, render_programs
from ops.placement import Host
from ops.placement import plan as place
from ops.replay import ReplayThread
from tests.conftest import REPO
from tests.ops.alert_sink import WatchedAlertSink as AlertSink
from tests.ops.fleet_harness import fleet, replay_server, run_py

HOSTS3 = (
    '[{ id = "euw1-a", region = "eu-west-1" }, { id = "use2-a", region = "us-east-2" }, '
    '{ id = "apne1-a", region = "ap-northeast-1" }]'
)
DEFAULT = [
    ("binance", "BTCUSDT", "book"),
    ("binance", "BTCUSDT", "trade"),
    ("coinbase", "BTC-USD", "book"),
    ("coinbase", "BTC-USD", "trade"),
]


def write_config(tmp_path: Path, body: str, *, binance: str = "") -> Path:
    """A config whose exchanges point nowhere (the universe is the default one, offline)."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(
        'data_dir = "data"\nhost_id = "euw1-a"\n'
        f'[exchanges.binance]\nrest_url = "http://127.0.0.1:9"\n{binance}'
        '[exchanges.coinbase]\nrest_url = "http://127.0.0.1:9"\n'
        f"{body}",
        encoding="utf-8",
    )
    return cfg


def ops(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def no_us_binance(exchange: str, regions: Sequence[str]) -> Sequence[str]:
    return [r for r in regions if exchange != "binance" or not r.startswith("us-")]


HOST_LIST = [
    Host("euw1-a", "eu-west-1"),
    Host("use2-a", "us-east-2"),
    Host("apne1-a", "ap-northeast-1"),
]


class TestConfig:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            ('[fleet]\nhosts = "euw1-a"\n', "[fleet]: hosts = 'euw1-a' must be a list of"),
            ("[fleet]\nhosts = [1]\n", "[fleet]: hosts[0] = 1 must be a list of"),
            (
                '[fleet]\nhosts = [{ id = "euw1-a", region = "eu-west-1", weight = 2 }]\n',
                "[fleet]: hosts[0]: unknown key 'weight' (id, region)",
            ),
            ('[fleet]\nhosts = [{ id = "euw1-a" }]\n', "[fleet]: hosts[0] = "),
            (
                '[fleet]\nhosts = [{ id = "euw1-a\\n[program:x]", region = "eu-west-1" }]\n',
                "[fleet] hosts: host id 'euw1-a\\n[program:x]' must be 1-63 of",
            ),
            (
                '[fleet]\nhosts = [{ id = "euw1-a", region = "Europe%" }]\n',
                "[fleet] hosts: host euw1-a region 'Europe%' is not a region name",
            ),
            (
                '[fleet]\nhosts = [{ id = "euw1-a", region = "eu-west-1" }, '
                '{ id = "euw1-a", region = "us-east-2" }]\n',
                "[fleet] hosts: host id 'euw1-a' appears twice",
            ),
            (
                '[fleet]\nhosts = [{ id = "use2-a", region = "us-east-2" }]\n',
                "host_id 'euw1-a' is not one of [fleet] hosts (use2-a)",
            ),
            ("[fleet]\nreplicas = 0\n", "[fleet]: replicas = 0 must be >= 1"),
            ('[fleet]\nreplicas = "2"\n', "[fleet]: replicas = '2' must be an integer"),
            ("[fleet]\nsilent_after_s = -1\n", "[fleet]: silent_after_s = -1 must be >= 0.0"),
            ("[fleet]\nlistener_tick_s = 7\n", "[fleet]: listener_tick_s = 7 must be one of"),
            (
                '[fleet]\nmetrics_textfile = "var/l3c.txt"\n',
                "[fleet]: metrics_textfile = 'var/l3c.txt' must name a *.prom file",
            ),
            (
                '[exchanges.bitstamp]\nregions = "eu-west-1"\n',
                "[exchanges.bitstamp]: regions = 'eu-west-1' must be a non-empty list of region",
            ),
            ("[exchanges.bitstamp]\nregions = []\n", "[exchanges.bitstamp]: regions = [] must"),
            (
                '[exchanges.bitstamp]\nregions = ["eu-west-1\\n"]\n',
                "[exchanges.bitstamp]: regions = ['eu-west-1\\n'] must",
            ),
        ],
    )
    def test_bad_values_are_one_line_errors(self, tmp_path: Path, body: str, message: str) -> None:
        """Each bad [fleet] or regions value: a ConfigError naming it, one printable line."""
        with pytest.raises(ConfigError) as exc:
            build_fleet_settings(load_config(write_config(tmp_path, body)))

        assert message in str(exc.value)
        assert str(exc.value).isprintable()

    def test_the_cli_says_it_in_one_line_and_exits_2(self, tmp_path: Path) -> None:
        """`ops.fleet plan` with a host_id outside the hosts: exit 2, one line, nothing made."""
        cfg = write_config(tmp_path, '[fleet]\nhosts = [{ id = "use2-a", region = "us-east-2" }]\n')

        proc = ops("ops.fleet", "--config", str(cfg), "plan")

        assert proc.returncode == 2
        assert proc.stderr == (
            f"ops.fleet: error: {cfg}: host_id 'euw1-a' is not one of [fleet] hosts (use2-a)\n"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["config.toml"]

    def test_a_typo_in_fleet_is_refused(self, tmp_path: Path) -> None:
        """`replica = 2` is not silently the default."""
        with pytest.raises(ConfigError, match=r"unknown key \[fleet\] replica \(did you mean"):
            load_config(write_config(tmp_path, "[fleet]\nreplica = 2\n"))


class TestShare:
    def test_each_host_renders_its_share_and_binance_never_runs_in_the_us(
        self, tmp_path: Path
    ) -> None:
        """3 regions, replicas 2: the hosts' files together run every stream twice, in two
        regions; Binance (HTTP 451 from US addresses) only in eu-west-1 and ap-northeast-1."""
        s = build_fleet_settings(
            load_config(write_config(tmp_path, f"[fleet]\nhosts = {HOSTS3}\n")),
            python="/venv/bin/python",
        )

        p = fleet_plan(s, DEFAULT)
        texts = {h.id: render_programs(s, p.by_host[h.id]) for h in s.hosts}

        assert p.unplaced == ()
        for stream in DEFAULT:
            args = f"--symbol {stream[1]} --data_type {stream[2]} "
            on = [h for h, text in texts.items() if args in text]
            assert len(on) == 2
            if stream[0] == "binance":
                assert sorted(on) == ["apne1-a", "euw1-a"]

    def test_configured_regions_override_the_adapter_default(self, tmp_path: Path) -> None:
        """`[exchanges.binance] regions = ["us-east-2"]`: only the Ohio host runs Binance."""
        cfg = write_config(
            tmp_path, f"[fleet]\nhosts = {HOSTS3}\n", binance='regions = ["us-east-2"]\n'
        )

        p = fleet_plan(build_fleet_settings(load_config(cfg)), DEFAULT)

        assert p.host_of(("binance", "BTCUSDT", "book")) == ["use2-a"]
        assert p.under_replicated == (
            ("binance", "BTCUSDT", "book"),
            ("binance", "BTCUSDT", "trade"),
        )

    def test_no_hosts_is_this_host_alone(self, tmp_path: Path) -> None:
        """Without [fleet] hosts every tracked stream is this host's (today's behaviour)."""
        s = build_fleet_settings(load_config(write_config(tmp_path, "")))

        assert fleet_plan(s, DEFAULT).by_host == {"euw1-a": tuple(DEFAULT)}

    @pytest.mark.parametrize(
        ("body", "events"),
        [
            ("", ",TICK_60"),
            ("[fleet]\nlistener_tick_s = 5\n", ",TICK_5"),
            ("[fleet]\nsilent_after_s = 0\n", ""),
            ('[fleet]\nsilent_after_s = 0\nmetrics_textfile = "var/l3c.prom"\n', ",TICK_60"),
        ],
    )
    def test_the_listener_gets_ticks_when_it_has_work(
        self, tmp_path: Path, body: str, events: str
    ) -> None:
        """TICK_{listener_tick_s} joins the listener's events when quiet streams are watched
        or metrics written; never otherwise."""
        s = build_fleet_settings(load_config(write_config(tmp_path, body)), python="/v/python")

        text = render_programs(s, [])

        assert (
            "events = PROCESS_STATE_EXITED,PROCESS_STATE_FATAL,PROCESS_STATE_BACKOFF,"
            f"PROCESS_STATE_RUNNING{events}\n"
        ) in text


class TestPlanCommand:
    def test_json_lists_each_host_s_streams_and_the_known_rates(self, tmp_path: Path) -> None:
        """The plan of the default universe; a stream with a recent status.json here has
        its frame rate (frames over uptime) on each of its hosts, every other stream none."""
        cfg = write_config(tmp_path, f"[fleet]\nhosts = {HOSTS3}\n")
        now = time.time()
        status = layout.status_path(
            layout.stream_dir(tmp_path / "data", "binance", "BTCUSDT", "trade")
        )
        status.parent.mkdir(parents=True)
        status.write_text(
            json.dumps({"frames": 1200, "started_at": now - 130.0, "updated_at": now - 10.0})
        )

        proc = ops("ops.fleet", "--config", str(cfg), "plan", "--json")

        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        expected = place(DEFAULT, HOST_LIST, replicas=2, allowed_regions=no_us_binance)
        listed = {
            h["id"]: tuple((s["exchange"], s["symbol"], s["data_type"]) for s in h["streams"])
            for h in got["hosts"]
        }
        assert listed == expected.by_host
        rates = {
            (h["id"], s["symbol"], s["data_type"]): s["frames_per_s"]
            for h in got["hosts"]
            for s in h["streams"]
        }
        # the stream's rate measured here is what each of its hosts should expect
        assert rates.pop(("euw1-a", "BTCUSDT", "trade")) == 10.0
        assert rates.pop(("apne1-a", "BTCUSDT", "trade")) == 10.0
        assert set(rates.values()) == {None}
        assert (got["replicas"], got["streams"], got["placements"], got["ok"]) == (2, 4, 8, True)

    def test_a_stream_no_region_may_collect_is_a_problem_exit_1(self, tmp_path: Path) -> None:
        """A fleet only in US regions: Binance is unplaced, listed with the reason, exit 1."""
        cfg = write_config(
            tmp_path,
            '[fleet]\nhosts = [{ id = "euw1-a", region = "us-east-1" }, '
            '{ id = "use2-a", region = "us-east-2" }]\n',
        )

        proc = ops("ops.fleet", "--config", str(cfg), "plan")

        assert proc.returncode == 1
        assert proc.stdout.endswith(
            "NEEDS A HUMAN: 2 stream(s) placed on no host:\n"
            "  - binance BTCUSDT book: binance may be collected in none of the fleet's regions "
            "(us-east-1, us-east-2)\n"
            "  - binance BTCUSDT trade: binance may be collected in none of the fleet's regions "
            "(us-east-1, us-east-2)\n"
        )
        assert "euw1-a (us-east-1): 2 stream(s)" in proc.stdout

    def test_apply_warns_and_alerts_an_unplaced_stream(self, tmp_path: Path) -> None:
        """`apply` (no supervisord: it renders) leaves Binance out with a warning and one alert."""
        cfg = write_config(
            tmp_path, '[fleet]\nhosts = [{ id = "euw1-a", region = "us-east-1" }]\nreplicas = 1\n'
        )
        (tmp_path / "var" / "supervisor").mkdir(parents=True)
        with AlertSink() as sink:
            proc = ops(
                "ops.fleet",
                "--config",
                str(cfg),
                "apply",
                env={"SLACK_WEBHOOK_URL": f"{sink.url}/slack"},
            )
            text = sink.wait_for(lambda t: "placed on no host" in t, 10.0)

        assert proc.returncode == 0, proc.stderr
        programs = (tmp_path / "var" / "supervisor" / "programs.conf").read_text()
        assert "[program:coinbase-btc-usd-book]" in programs
        assert "binance" not in programs
        assert text == (
            "[ERROR] fleet: 2 tracked stream(s) placed on no host: not collected anywhere | "
            "streams=binance:BTCUSDT:book, binance:BTCUSDT:trade | count=2 | reason=binance may "
            "be collected in none of the fleet's regions (us-east-1) | host=euw1-a"
        )
        (warning,) = [
            json.loads(line)
            for line in proc.stderr.splitlines()
            if line.startswith("{") and '"fleet.unplaced"' in line
        ]
        assert warning["level"] == "warning"

    def test_render_another_host_s_share_needs_stdout(self, tmp_path: Path) -> None:
        """`render --host use2-a` prints Ohio's share; without --stdout it is refused (the
        programs file is this host's own)."""
        cfg = write_config(tmp_path, f"[fleet]\nhosts = {HOSTS3}\n")

        shown = ops("ops.fleet", "--config", str(cfg), "render", "--host", "use2-a", "--stdout")
        refused = ops("ops.fleet", "--config", str(cfg), "render", "--host", "use2-a")
        unknown = ops("ops.fleet", "--config", str(cfg), "render", "--host", "x\ny", "--stdout")

        assert shown.returncode == 0, shown.stderr
        assert "binance" not in shown.stdout
        assert "--exchange coinbase" in shown.stdout
        assert refused.returncode == 2
        assert "its share goes to stdout only (add --stdout)" in refused.stderr
        assert not (tmp_path / "var" / "supervisor" / "programs.conf").exists()
        assert unknown.returncode == 2
        assert unknown.stderr == (
            "ops.fleet: error: host 'x\\ny' is not one of [fleet] hosts (euw1-a, use2-a, apne1-a)\n"
        )


# --- a real supervisord: this host runs its share, a host leaving moves only its streams ----

STREAMS = [
    ("binance", "NKNUSDT", "trade"),
    ("binance", "BLZETH", "trade"),
    ("binance", "LRCBTC", "trade"),
    ("binance", "RUNEEUR", "trade"),
    ("coinbase", "SKL-USD", "trade"),
    ("coinbase", "BAND-BTC", "trade"),
]
TWO = '[{ id = "test", region = "eu-west-1" }, { id = "peer", region = "eu-west-1" }]'


@pytest.fixture(scope="module")
def replay() -> Iterator[ReplayThread]:
    with replay_server() as r:
        yield r


@pytest.mark.e2e
def test_apply_runs_this_host_s_share_and_keeps_pids_when_a_host_leaves(
    replay: ReplayThread,
) -> None:
    """Two hosts in one region, replicas 1: supervisord runs exactly this host's share; the
    peer leaving the fleet moves its streams here and leaves the running ones' PIDs alone."""
    share = place(
        STREAMS,
        [Host("test", "eu-west-1"), Host("peer", "eu-west-1")],
        replicas=1,
        allowed_regions=lambda ex, rs: rs,
    ).by_host
    assert share["test"]  # the case is only a test if both hosts have some
    assert share["peer"]
    mine = sorted(f"collector:{program_name(*st)}" for st in share["test"])
    toml = f"periodic = []\nlistener = false\nstartsecs = 1\nhosts = {TWO}\nreplicas = 1\n"
    track = [(e, s, d) for e, s, d in STREAMS]  # (exchange, pair, data types)

    with fleet(replay, track=track, fleet_toml=toml) as f:
        pids = f.wait_running(mine)
        assert sorted(f.infos()) == mine

        text = f.cfg.read_text().replace(f"hosts = {TWO}\n", "")
        f.cfg.write_text(text)
        run_py("-m", "ops.fleet", "--config", str(f.cfg), "apply")
        every = sorted(f"collector:{program_name(*st)}" for st in STREAMS)
        after = f.wait_running(every)

    assert {n: after[n] for n in mine} == pids
