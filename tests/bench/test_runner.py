"""``python -m tests.bench``: each benchmark in an interpreter of its own, in the order
asked; an unknown name is refused before anything runs."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import REPO

# The runner itself, run in a process that then says whether it imported the benchmark.
RUN = (
    "import sys\n"
    "from tests.bench.__main__ import main\n"
    "code = main(sys.argv[1:])\n"
    "print('imported here:', 'tests.bench.bench_placement' in sys.modules)\n"
    "sys.exit(code)\n"
)


def _bench(*names: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN, *names],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_benchmark_runs_in_its_own_interpreter() -> None:
    done = _bench("placement")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == "=== bench placement ==="
    assert any(line.startswith("[uniform] 3000 streams") for line in lines)  # its own output
    assert re.fullmatch(r"=== bench placement: [0-9.]+ s ===", lines[-2])
    assert lines[-1] == "imported here: False"


def test_an_unknown_name_runs_nothing() -> None:
    done = _bench("placement", "nosuch")
    assert done.returncode == 2
    assert "unknown benchmark(s): nosuch; have: " in done.stderr
    assert "=== bench" not in done.stdout
