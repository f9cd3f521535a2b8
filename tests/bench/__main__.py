"""Run the benchmarks: every ``tests/bench/bench_*.py`` module's ``main()``, or the named ones.

Usage: ``python -m tests.bench [AREA ...]`` (AREA = the part after ``bench_``).

Each benchmark runs in an interpreter of its own, so that none inherits the heap, caches,
imports and threads another left behind: a figure depends on its own benchmark only. A
benchmark that fails is reported and the others still run; the exit status is then 1.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    names = sorted(p.stem.removeprefix("bench_") for p in here.glob("bench_*.py"))
    wanted = argv or names
    unknown = [w for w in wanted if w not in names]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(names)}", file=sys.stderr
        )
        return 2
    failed = []
    for name in wanted:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        code = f"import tests.bench.bench_{name} as bench; bench.main()"
        done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False)
        took = time.perf_counter() - t0
        if done.returncode != 0:
            failed.append(name)
            print(f"=== bench {name}: FAILED (exit {done.returncode}) after {took:.1f} s ===")
        else:
            print(f"=== bench {name}: {took:.1f} s ===", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
