"""A module that stands in for another while one import runs (standard library only).

Two libraries we must use load, at import, a module they use only for one answer or only
later (collector/wslib.py, collector/common/structloglib.py). ``stand_in`` puts a module of
ours in ``sys.modules`` under that name for the duration of a ``with`` block, unless the
real module, or the library being imported, is already loaded; afterwards only the real
module is found.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def stand_in(name: str, module: types.ModuleType, *, importing: str) -> Iterator[bool]:
    """``sys.modules[name]`` is ``module`` inside the block, unless ``name`` or ``importing``
    is already loaded (then the block runs as it would anyway); yields whether it stood in.
    Taken out when the block ends, however it ends."""
    used = name not in sys.modules and importing not in sys.modules
    if used:
        sys.modules[name] = module
    try:
        yield used
    finally:
        if used and sys.modules.get(name) is module:
            del sys.modules[name]
