"""A trade stream's start imports only what it uses: no httpx (REST), no difflib (the
config's "did you mean" hint, on its error path only), no email (a Retry-After given as a
date), no importlib.metadata (which trio-websocket would load for one version number:
collector/wslib.py), no asyncio (structlog's, for its ``a*`` methods:
collector/common/structloglib.py) and no book machinery (collector/bookhandlers.py, book.py,
l3book.py: only a book or l3 stream's handler needs them)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ops.replay import ReplayThread
from tests.collector.harness import collector, write_config
from tests.conftest import CAPTURES, REPO

UNUSED = (
    "httpx",
    "difflib",
    "importlib.metadata",
    "zipfile",
    "email",
    "asyncio",
    "collector.bookhandlers",
    "collector.book",
    "collector.l3book",
)


def test_a_collector_start_loads_none_of_what_it_does_not_use() -> None:
    code = (
        "import sys\nimport collector.app, collector.__main__\n"
        f"print(*(m in sys.modules for m in {UNUSED!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False"] * len(UNUSED)


def test_nor_does_a_running_trade_stream(tmp_path: Path, recorded: object) -> None:
    """The real process, connected and writing rows: every module it imported, at start or
    later, as Python's own import log (PYTHONPROFILEIMPORTTIME) tells it."""
    with ReplayThread([CAPTURES["coinbase"]]) as r:
        cfg = write_config(tmp_path / "config.toml", "coinbase", r)
        env = {"PYTHONPROFILEIMPORTTIME": "1"}
        with collector(tmp_path, "coinbase", "SKL-USD", "trade", cfg, env) as c:
            c.wait_for(lambda s: s.get("rows", 0) >= 53)
            assert c.stop() == 0

    imported = set(re.findall(r"^import time:.*\|\s*(\S+)$", c.logs(), re.MULTILINE))
    assert {"trio_websocket", "collector.session", "orjson"} <= imported  # the log is read
    assert imported.isdisjoint(UNUSED), sorted(imported & set(UNUSED))
