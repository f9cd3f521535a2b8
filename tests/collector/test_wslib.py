"""trio-websocket without importlib.metadata (collector/wslib.py): the stand-in gives
trio-websocket trio's real version, is gone once it is imported, steps aside where the real
module is loaded, and a release that asks it for more gets the real module. And
``message_queue``: a burst's queued messages taken in one go, in order, none lost."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from tests.collector.importers import runtime_importers
from tests.conftest import REPO


def _run(code: str, pythonpath: Path | None = None) -> list[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(pythonpath), str(REPO)])
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60, env=env
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_trio_websocket_gets_trios_version_and_the_stand_in_is_gone() -> None:
    out = _run(
        "import sys\n"
        "from collector.wslib import trio_websocket\n"
        "print('importlib.metadata' in sys.modules, trio_websocket._impl._IS_TRIO_MULTI_ERROR)\n"
        "import importlib.metadata, trio\n"
        "print(importlib.metadata.version('trio') == trio.__version__)\n"
        "print(importlib.metadata.version('httpx') != '')\n"
        "print(hasattr(importlib.metadata, 'distributions'))"
    )
    assert out == ["False", "False", "True", "True", "True"]


def test_the_real_module_when_it_is_already_loaded() -> None:
    out = _run(
        "import importlib.metadata, sys\n"
        "real = sys.modules['importlib.metadata']\n"
        "from collector.wslib import trio_websocket\n"
        "print(sys.modules['importlib.metadata'] is real, trio_websocket.__name__)"
    )
    assert out == ["True", "trio_websocket"]


@pytest.mark.parametrize(
    "module",
    [
        # a name the stand-in lacks (ImportError), then another distribution (LookupError)
        "from importlib.metadata import PackageNotFoundError, version\n"
        "TRIO = version('trio')\nHTTPX = version('httpx')\n",
        # another distribution first (LookupError)
        "from importlib.metadata import version\n"
        "HTTPX = version('httpx')\nTRIO = version('trio')\n",
        # an attribute the stand-in lacks (AttributeError)
        "import importlib.metadata\n"
        "names = importlib.metadata.packages_distributions()\n"
        "TRIO = importlib.metadata.version('trio')\nHTTPX = importlib.metadata.version('httpx')\n",
    ],
    ids=["name", "distribution", "attribute"],
)
def test_a_release_asking_for_more_gets_the_real_module(tmp_path: Path, module: str) -> None:
    """A trio_websocket asking the stand-in for more than trio's version: imported again
    with the real importlib.metadata, which stays loaded."""
    pkg = tmp_path / "trio_websocket"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(module)
    out = _run(
        "import sys\n"
        "from collector.wslib import trio_websocket\n"
        "import trio\n"
        "print(trio_websocket.__file__.startswith(sys.path[1]), trio_websocket.TRIO == "
        "trio.__version__, trio_websocket.HTTPX != '', type(sys.modules['importlib.metadata']"
        ".distributions).__name__)",
        pythonpath=tmp_path,
    )
    assert out == ["True", "True", "True", "function"]


def test_only_wslib_imports_trio_websocket_in_the_collector() -> None:
    importers = runtime_importers(("collector",), "trio_websocket")
    assert sorted(importers) == ["collector/wslib.py"]


async def test_message_queue_gives_the_queued_messages_in_order_then_the_close() -> None:
    """Against a real trio-websocket server that sends 200 messages and closes: taking what
    is queued (after a nap, as Session._gather does) between single get_message calls gives
    every message once, in the order sent; then get_message says the connection closed.
    None here means the installed trio-websocket no longer has the queue the collector
    drains in a burst (it would fall back to a round per frame, slower)."""
    from collector.wslib import QUEUE_NAP_S, message_queue, trio_websocket

    sent = [f"m{i}" for i in range(200)]

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        for text in sent:
            await ws.send_message(text)
        await ws.aclose()

    got: list[str | bytes] = []
    drained, closed = 0, False
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                trio_websocket.serve_websocket, handler, "127.0.0.1", 0, None
            )
            port = server.port
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/", message_queue_size=64
            ) as ws:
                queue = message_queue(ws)
                assert queue is not None
                while not closed:
                    try:
                        got.append(await ws.get_message())
                    except trio_websocket.ConnectionClosed:
                        closed = True
                        break
                    await trio.sleep(QUEUE_NAP_S)
                    while True:
                        try:
                            got.append(queue.receive_nowait())
                        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                            break
                        drained += 1
            nursery.cancel_scope.cancel()
    assert closed
    assert got == sent
    assert drained > len(sent) // 2  # most came from the queue, not one get_message each


def test_message_queue_is_none_without_the_channel() -> None:
    """A connection object without trio-websocket's channel (a release that renamed it):
    None, and the collector receives with get_message alone."""
    from collector.wslib import message_queue

    class Renamed:
        _recv_channel = "not a channel"

    assert message_queue(Renamed()) is None  # type: ignore[arg-type]
    assert message_queue(object()) is None  # type: ignore[arg-type]
