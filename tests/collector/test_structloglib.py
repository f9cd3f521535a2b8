"""structlog without asyncio at import (collector/common/structloglib.py): a process that
imports structlog through it has no asyncio until one of structlog's asyncio methods runs,
and then that method works on the real asyncio; where asyncio is loaded first, structlog
holds the real module."""

from __future__ import annotations

import subprocess
import sys

from tests.collector.importers import runtime_importers
from tests.conftest import REPO


def _run(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_asyncio_only_at_the_first_use_and_then_the_real_one() -> None:
    out = _run(
        "import sys\n"
        "from collector.common.structloglib import structlog\n"
        "print('asyncio' in sys.modules)\n"
        "structlog.configure(processors=[structlog.processors.KeyValueRenderer()],\n"
        "    logger_factory=structlog.PrintLoggerFactory(sys.stdout))\n"
        "import structlog.stdlib, logging\n"
        "logging.basicConfig(stream=sys.stdout, format='%(message)s', level=logging.INFO)\n"
        "std = structlog.stdlib.BoundLogger(logging.getLogger('x'), "
        "[structlog.processors.KeyValueRenderer()], {})\n"
        "async def main():\n"
        "    await structlog.get_logger().ainfo('native', n=1)\n"
        "    await std.ainfo('stdlib', n=2)\n"
        "import asyncio\n"
        "asyncio.run(main())\n"
        "print(sys.modules['asyncio'] is asyncio, type(structlog.stdlib.asyncio).__name__)\n"
        "print(structlog.stdlib.asyncio.get_running_loop is asyncio.get_running_loop)"
    )
    assert out == [
        "False",
        "n=1",
        "event='native'",
        "n=2",
        "event='stdlib'",
        "True",
        "_Asyncio",
        "True",
    ]


def test_the_real_asyncio_when_it_is_already_loaded() -> None:
    out = _run(
        "import asyncio\n"
        "from collector.common.structloglib import structlog\n"
        "import structlog.stdlib\n"
        "print(structlog.stdlib.asyncio is asyncio)"
    )
    assert out == ["True"]


def test_only_structloglib_imports_structlog_in_the_collector() -> None:
    importers = runtime_importers(("collector",), "structlog")
    assert sorted(importers) == ["collector/common/structloglib.py"]
