"""A trade stream's start imports only what it uses: no httpx (REST) and no difflib (the
config's "did you mean" hint, on its error path only)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO


def test_a_collector_start_loads_neither_httpx_nor_difflib() -> None:
    code = (
        "import sys\nimport collector.app, collector.__main__\n"
        "print(*(m in sys.modules for m in ('httpx', 'difflib')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
