"""Run the benchmarks: every ``tests/bench/bench_*.py`` module's ``main()``, or the named ones.

Usage: ``python -m tests.bench [AREA ...]`` (AREA = the part after ``bench_``).
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path


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
    for name in wanted:
        print(f"\n=== bench {name} ===", flush=True)
        t0 = time.perf_counter()
        importlib.import_module(f"tests.bench.bench_{name}").main()
        print(f"=== bench {name}: {time.perf_counter() - t0:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
