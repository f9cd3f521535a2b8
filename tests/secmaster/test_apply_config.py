"""`apply_cmd` runs against secmaster's own config; `--config` after the subcommand (issue 16).

Real ``python -m secmaster`` and ``python -m ops.fleet`` processes, a config in tmp_path whose
``[fleet] programs_file`` is in tmp_path too, and a check that the checkout's own ``var/`` and
``data/`` (what the default config would use) are left exactly as they were.
"""

from __future__ import annotations

import io
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ops.replay import ReplayThread
from secmaster.cli import run
from tests.secmaster.conftest import REPO, run_secmaster, write_config

pytestmark = pytest.mark.timeout(120)


def _snapshot(root: Path) -> list[tuple[str, int]] | None:
    """Every file under ``root`` with its mtime (None: no such directory)."""
    if not root.exists():
        return None
    return sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*"))


@pytest.fixture
def checkout_untouched() -> Iterator[None]:
    """Asserts after the test that the checkout's var/ and data/ did not change."""
    before = {d: _snapshot(REPO / d) for d in ("var", "data")}
    yield
    assert {d: _snapshot(REPO / d) for d in ("var", "data")} == before


def _fleet_config(tmp_path: Path, replay: ReplayThread, apply_cmd: str) -> Path:
    cfg = write_config(tmp_path, replay, apply_cmd=apply_cmd)
    with cfg.open("a", encoding="utf-8") as f:
        f.write('[fleet]\nprograms_file = "fleet/programs.conf"\nlog_dir = "fleet/log"\n')
    assert run(["--config", str(cfg), "sync"], io.StringIO()) == 0
    return cfg


@pytest.mark.usefixtures("checkout_untouched")
class TestApplyUsesTheSameConfig:
    def test_track_renders_the_fleet_of_its_config(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """`secmaster --config X track`: the default apply_cmd renders X's programs file."""
        cfg = _fleet_config(tmp_path, replay, "python -m ops.fleet apply")

        proc = run_secmaster(cfg, "track", "binance", "ETHBTC", "--data-types", "trade")

        assert proc.returncode == 0, proc.stderr
        text = (tmp_path / "fleet" / "programs.conf").read_text()
        assert "[program:binance-ethbtc-trade]\n" in text
        assert f"--symbol ETHBTC --data_type trade --config {cfg}\n" in text
        assert (tmp_path / "fleet" / "log" / "collector").is_dir()

    def test_untrack_and_run_apply_the_same_config(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """untrack and one scheduled iteration of `run` render X's programs file as well."""
        cfg = _fleet_config(tmp_path, replay, "python -m ops.fleet apply")
        programs = tmp_path / "fleet" / "programs.conf"

        assert run_secmaster(cfg, "untrack", "binance", "BTCUSDT").returncode == 0
        assert "[program:binance-btcusdt-book]" not in programs.read_text()
        programs.unlink()
        proc = run_secmaster(cfg, "run", "--exchange", "coinbase", "--iterations", "1")

        assert proc.returncode == 0, proc.stderr
        assert "[program:coinbase-btc-usd-trade]\n" in programs.read_text()

    def test_config_placeholder_is_replaced(self, tmp_path: Path, replay: ReplayThread) -> None:
        """`{config}` in apply_cmd becomes the config path; nothing is appended then."""
        script = "import sys\nwith open(sys.argv[1], 'a') as f: f.write(repr(sys.argv[2:]))"
        log = tmp_path / "hook.log"
        cmd = shlex.join([sys.executable, "-c", script, str(log), "--cfg={config}", "x"])
        cfg = _fleet_config(tmp_path, replay, cmd)

        assert run_secmaster(cfg, "untrack", "binance", "BTCUSDT").returncode == 0

        assert log.read_text() == repr([f"--cfg={cfg}", "x"])

    def test_without_placeholder_config_is_appended(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """A command without `{config}` gets `--config X` appended."""
        script = "import sys\nwith open(sys.argv[1], 'a') as f: f.write(repr(sys.argv[2:]))"
        log = tmp_path / "hook.log"
        cfg = _fleet_config(tmp_path, replay, shlex.join([sys.executable, "-c", script, str(log)]))

        assert run_secmaster(cfg, "untrack", "binance", "BTCUSDT").returncode == 0

        assert log.read_text() == repr(["--config", str(cfg)])


class TestConfigAfterSubcommand:
    def test_secmaster_accepts_config_after_the_subcommand(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """`secmaster track ... --config X` means what `secmaster --config X track ...` means."""
        cfg = write_config(tmp_path, replay)
        assert run(["sync", "--config", str(cfg)], io.StringIO()) == 0
        out = io.StringIO()

        code = run(
            ["track", "binance", "ETHBTC", "--data-types", "trade", "--config", str(cfg)], out
        )

        assert (code, out.getvalue()) == (0, "tracking binance:ETHBTC:trade\n")
        listed = io.StringIO()
        assert (
            run(["--config", str(cfg), "tracked", "--format", "csv", "--config", str(cfg)], listed)
            == 0
        )
        assert "binance,ETHBTC,trade,TRADING," in listed.getvalue()

    def test_secmaster_two_different_configs_exit_2(
        self, tmp_path: Path, replay: ReplayThread, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--config before and after the subcommand naming different files: one line, exit 2."""
        cfg = write_config(tmp_path, replay)
        other = tmp_path / "other.toml"

        code = run(["--config", str(cfg), "sync", "--config", str(other)], io.StringIO())

        assert code == 2
        assert capsys.readouterr().err == (
            f"secmaster: error: --config given twice with different files: {str(cfg)!r}, "
            f"{str(other)!r}\n"
        )
        assert not (tmp_path / "data").exists()

    @pytest.mark.usefixtures("checkout_untouched")
    def test_ops_fleet_accepts_config_after_the_subcommand(
        self, tmp_path: Path, replay: ReplayThread
    ) -> None:
        """`python -m ops.fleet apply --config X` and `render --stdout --config X` use X."""
        cfg = _fleet_config(tmp_path, replay, "")

        apply = subprocess.run(
            [sys.executable, "-m", "ops.fleet", "apply", "--config", str(cfg)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        shown = subprocess.run(
            [sys.executable, "-m", "ops.fleet", "render", "--stdout", "--config", str(cfg)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert apply.returncode == 0, apply.stderr
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout == (tmp_path / "fleet" / "programs.conf").read_text()
        assert "[program:binance-btcusdt-book]\n" in shown.stdout

    def test_ops_fleet_two_different_configs_exit_2(self, tmp_path: Path) -> None:
        """ops.fleet with two different --config files: one line, exit 2, nothing written."""
        a, b = tmp_path / "a.toml", tmp_path / "b.toml"
        a.write_text('data_dir = "data"\n')
        b.write_text('data_dir = "data"\n')

        proc = subprocess.run(
            [sys.executable, "-m", "ops.fleet", "--config", str(a), "render", "--config", str(b)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert proc.returncode == 2
        assert proc.stderr == (
            f"ops.fleet: error: --config given twice with different files: {str(a)!r}, {str(b)!r}\n"
        )
        assert sorted(p.name for p in tmp_path.iterdir()) == ["a.toml", "b.toml"]
