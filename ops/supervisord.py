"""``python -m ops.supervisord -c supervisord.conf -n``: the fleet's supervisord.

It is supervisord itself (same options, same config, same XML-RPC), with one change to what
a freshly forked child does before it execs its program. supervisord closes the descriptors
it may have inherited, 3 up to ``minfds``, with one ``os.close`` call each, so a spawn costs
CPU in proportion to ``minfds`` whatever the program: measured here, 12 ms per spawn at our
``minfds = 8192`` and 99 ms at 65,536 (a hundred collectors starting: 1.2 s and 10 s of CPU
before any of them runs a line). Here the child closes the same range with one
``os.closerange`` call (close_range(2) on Linux 5.9 and newer, a loop in C elsewhere):
0.01 ms, and the same descriptors end up closed.

The change wraps supervisord's own ``_prepare_child_fds`` of each process class: its
redirections of stdin, stdout and stderr run unchanged, with ``minfds`` lowered to 3 in the
child while they run (so its own loop has nothing left to close), then the whole range is
closed at once. It runs in the forked child only, which execs next or exits, so supervisord
itself never sees the lowered value. Should a release of supervisor close the range some
other way, the wrapper still closes exactly 3 up to ``minfds``: what supervisord promises.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from supervisor import process, supervisord

# The process classes whose forked child runs _prepare_child_fds (FastCGI has its own).
CHILD_CLASSES = (process.Subprocess, process.FastCGISubprocess)


def _closing_at_once(prepare: Callable[[Any], None]) -> Callable[[Any], None]:
    """``prepare`` (a ``_prepare_child_fds``) with the descriptor range closed in one call."""

    def prepare_child_fds(self: Any) -> None:
        options = self.config.options
        minfds = options.minfds
        options.minfds = 3  # in the forked child only (see the module docstring)
        try:
            prepare(self)
        finally:
            options.minfds = minfds
        os.closerange(3, minfds)

    prepare_child_fds.__wrapped__ = prepare  # type: ignore[attr-defined]
    return prepare_child_fds


def install() -> None:
    """Makes supervisord's children close their inherited descriptors in one call (once)."""
    for cls in CHILD_CLASSES:
        prepare = cls.__dict__["_prepare_child_fds"]
        if not hasattr(prepare, "__wrapped__"):
            cls._prepare_child_fds = _closing_at_once(prepare)


def main(argv: list[str] | None = None) -> None:
    install()
    supervisord.main(args=sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
