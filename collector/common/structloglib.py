"""structlog without asyncio at import: ``from collector.common.structloglib import structlog``.

structlog's package imports ``structlog.stdlib`` and ``structlog._native``, which import
asyncio for their ``a*`` methods (``await log.ainfo(...)`` runs the call in asyncio's
executor). Nothing of ours is asyncio (trio runs every loop), yet each collector paid for
asyncio's import: 38M of its ~950M start-up instructions (callgrind), with
concurrent.futures and their kin. While structlog is imported, ``sys.modules["asyncio"]``
is a stand-in module whose first attribute lookup imports the real asyncio and answers
from it; it is taken out at once after, so structlog's modules hold the stand-in and every
other ``import asyncio`` gets the real module. Where asyncio is already loaded, structlog
gets it directly. The library itself is unchanged.

The collector imports structlog through this module (``tests/collector/test_structloglib.py``).
"""

from __future__ import annotations

import importlib
import sys
import types

from collector.common.standin import stand_in


class _Asyncio(types.ModuleType):
    """asyncio, imported at the first use of any of its names."""

    def __getattr__(self, name: str) -> object:
        if sys.modules.get("asyncio") is self:
            del sys.modules["asyncio"]
        return getattr(importlib.import_module("asyncio"), name)


with stand_in(
    "asyncio", _Asyncio("asyncio", "asyncio, imported at first use"), importing="structlog"
):
    import structlog

__all__ = ["structlog"]
