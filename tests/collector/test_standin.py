"""collector/common/standin.py: a module stands in for another only inside its block, only
where neither it nor the importing library is loaded, and is gone however the block ends."""

from __future__ import annotations

import sys
import types

import pytest

from collector.common.standin import stand_in

NAME = "l3c_test_standin_target"


def test_in_the_block_only_and_gone_after_an_error() -> None:
    module = types.ModuleType(NAME)
    with stand_in(NAME, module, importing="l3c_test_nothing") as used:
        assert used
        assert sys.modules[NAME] is module
    assert NAME not in sys.modules
    with pytest.raises(ImportError), stand_in(NAME, module, importing="l3c_test_nothing"):
        raise ImportError("the library asked for more")
    assert NAME not in sys.modules


def test_not_where_the_module_or_the_library_is_loaded() -> None:
    real = types.ModuleType(NAME)
    sys.modules[NAME] = real
    try:
        with stand_in(NAME, types.ModuleType(NAME), importing="l3c_test_nothing") as used:
            assert not used
            assert sys.modules[NAME] is real
        assert sys.modules[NAME] is real  # the real one stays
    finally:
        del sys.modules[NAME]
    with stand_in(NAME, types.ModuleType(NAME), importing="sys") as used:
        assert not used
        assert NAME not in sys.modules
