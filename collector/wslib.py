"""trio-websocket without ``importlib.metadata``: ``from collector.wslib import trio_websocket``.

trio-websocket asks ``importlib.metadata.version("trio")`` once, at import, to learn whether
this trio still has ``MultiError`` (before 0.22). That one question imports
``importlib.metadata`` (with zipfile, email, csv and their kin) and reads trio's installed
metadata: 56M of the ~690M instructions that importing trio and trio-websocket takes, in
every collector's start, of which it otherwise uses none. The answer is trio's own
``trio.__version__``, so while trio-websocket is imported a stand-in ``importlib.metadata``
that only answers that question is in ``sys.modules``, and it is taken out at once after;
the library itself is unchanged. Where ``importlib.metadata`` is already loaded (a test run,
say), or the stand-in does not satisfy the import (a release that asks it for more: any
name or distribution but ``version("trio")``), the real module is used.

The collector imports trio-websocket through this module
(``tests/collector/test_wslib.py``).
"""

from __future__ import annotations

import sys
import types

import trio

from collector.common.standin import stand_in


def _version(distribution: str) -> str:
    if distribution != "trio":
        raise LookupError(f"the stand-in importlib.metadata knows only trio, not {distribution!r}")
    return trio.__version__


_metadata = types.ModuleType("importlib.metadata", "trio's version, for trio-websocket only")
_metadata.version = _version  # type: ignore[attr-defined]

try:
    with stand_in("importlib.metadata", _metadata, importing="trio_websocket") as _used:
        import trio_websocket
except (ImportError, LookupError, AttributeError):
    if not _used:
        raise
    # a release that asks for more: again, with the real module
    for _name in [m for m in sys.modules if m.partition(".")[0] == "trio_websocket"]:
        del sys.modules[_name]
    import trio_websocket

__all__ = ["trio_websocket"]
