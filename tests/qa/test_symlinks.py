"""QA never follows a symlink below the data directory and never writes outside it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import structlog

from collector.common.layout import report_path
from collector.config import load_config
from qa.runner import run_once
from qa.settings import QASettings, build_qa_settings
from tests.conftest import REPO
from tests.qa.helpers import parsed_path, raw_path, trade_rows, write_parsed


def qa_settings(data: Path) -> QASettings:
    return build_qa_settings(load_config(None), data_dir=data)


def layout(tmp_path: Path) -> tuple[Path, Path, Path]:
    """data/ with one real file; outside/ (not under data/) with a file of its own."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    rows = trade_rows(20, symbol="AAAUSDT")
    write_parsed(parsed_path(data, "binance", "AAAUSDT", "trade"), "trade", rows)
    evil = trade_rows(20, symbol="EVILUSDT")
    foreign = write_parsed(parsed_path(outside, "binance", "EVILUSDT", "trade"), "trade", evil)
    return data, outside, foreign


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def qa_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TELEGRAM_"))}
    return subprocess.run(
        [sys.executable, "-m", "qa", *args],
        cwd=REPO,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_symlinked_directory_out_of_the_data_dir_is_not_followed(tmp_path: Path) -> None:
    """A symbol directory that is a symlink to a tree outside the data dir: its file is not
    checked and no report is written there; the skip is logged once."""
    data, outside, _ = layout(tmp_path)
    (data / "binance" / "EVILUSDT").symlink_to(outside / "binance" / "EVILUSDT")
    before = files_under(outside)

    with structlog.testing.capture_logs() as logs:
        result = run_once(qa_settings(data))

    assert (result.checked, result.ok) == (1, 1)
    assert files_under(outside) == before
    skipped = [e for e in logs if e["event"] == "qa.symlinks_skipped"]
    assert [(e["count"], e["first"]) for e in skipped] == [(1, str(data / "binance" / "EVILUSDT"))]


def test_symlinked_file_and_day_directory_are_not_followed(tmp_path: Path) -> None:
    """A .csv.gz that is a symlink, and a day directory that is one, are both skipped."""
    data, outside, foreign = layout(tmp_path)
    day = parsed_path(data, "binance", "AAAUSDT", "trade").parent
    link = day / "20240301T110000Z_binance_AAAUSDT_trade.csv.gz"
    link.symlink_to(foreign)
    (day.parent / "2024-03-02").symlink_to(foreign.parent, target_is_directory=True)

    result = run_once(qa_settings(data))

    assert result.checked == 1
    assert not report_path(link).exists()
    assert files_under(outside) == [str(foreign.relative_to(outside))]


def test_symlinked_raw_directory_is_not_read(tmp_path: Path) -> None:
    """The raw file of a parsed file is looked up without following a symlinked raw/ dir."""
    data, outside, _ = layout(tmp_path)
    parsed = parsed_path(data, "binance", "AAAUSDT", "trade")
    raw = raw_path(parsed)
    planted = outside / "raw" / raw.parent.name / raw.name
    write_parsed(planted, "trade", ["x\n"])  # a raw file of the right name, outside
    (data / "binance" / "AAAUSDT" / "trade" / "raw").symlink_to(outside / "raw")
    assert raw.is_file()  # through the link

    run_once(qa_settings(data))

    assert orjson.loads(report_path(parsed).read_bytes())["raw_file"] is None


def test_planted_symlink_at_the_reports_temp_name_is_not_written_through(tmp_path: Path) -> None:
    """A symlink planted where the report's temporary file goes is replaced, not followed,
    and a report name that is a symlink is replaced by the report itself."""
    data, outside, _ = layout(tmp_path)
    parsed = parsed_path(data, "binance", "AAAUSDT", "trade")
    report = report_path(parsed)
    victim = outside / "victim.txt"
    victim.write_text("keep me")
    report.with_name(f".{report.name}.{os.getpid()}.tmp").symlink_to(victim)
    other = outside / "other.txt"
    other.write_text("keep me too")
    report.symlink_to(other)

    run_once(qa_settings(data), force=True)

    assert victim.read_text() == "keep me"
    assert other.read_text() == "keep me too"
    assert not report.is_symlink()
    assert orjson.loads(report.read_bytes())["status"] == "ok"
    assert sorted(p.name for p in parsed.parent.iterdir()) == [parsed.name, report.name]


def test_path_outside_the_data_dir_is_refused(tmp_path: Path) -> None:
    """`qa run --path` outside the data dir, directly or through a symlink inside it:
    one line, exit 2, no report anywhere."""
    data, outside, foreign = layout(tmp_path)
    (data / "binance" / "EVILUSDT").symlink_to(outside / "binance" / "EVILUSDT")
    via_link = data / "binance" / "EVILUSDT" / "trade"

    direct = qa_cli("run", "--data-dir", str(data), "--path", str(foreign.parent))
    linked = qa_cli("run", "--data-dir", str(data), "--path", str(via_link))

    assert (direct.returncode, linked.returncode) == (2, 2)
    assert direct.stderr == (
        f"qa: --path {str(foreign.parent)!r} is outside the data dir {str(data)!r}\n"
    )
    assert linked.stderr == (
        f"qa: --path {str(via_link)!r} is outside the data dir {str(data)!r}"
        f" (it leads to {str(outside / 'binance' / 'EVILUSDT' / 'trade')!r})\n"
    )
    assert not list(tmp_path.rglob("*.qa.json"))


def test_empty_or_missing_data_dir_and_empty_path_are_refused(tmp_path: Path) -> None:
    """--data-dir "" (the current directory), a data dir that does not exist and --path ""
    are each one line and exit 2; nothing is created."""
    data, _, _ = layout(tmp_path)

    empty = qa_cli("run", "--data-dir", "")
    missing = qa_cli("run", "--data-dir", str(tmp_path / "nope"))
    empty_path = qa_cli("run", "--data-dir", str(data), "--path", "")

    assert (empty.returncode, missing.returncode, empty_path.returncode) == (2, 2, 2)
    assert empty.stderr == "qa: --data-dir is empty (write . for the current directory)\n"
    assert missing.stderr == f"qa: data dir {str(tmp_path / 'nope')!r} is not a directory\n"
    assert empty_path.stderr == "qa: --path is empty (write . for the current directory)\n"
    assert not (tmp_path / "nope").exists()
    assert not list(tmp_path.rglob("*.qa.json"))
    assert not list(REPO.glob("*.qa.json"))
