"""trio-websocket without importlib.metadata (collector/wslib.py): the stand-in gives
trio-websocket trio's real version, is gone once it is imported, steps aside where the real
module is loaded, and a release that asks it for more gets the real module. And
``message_queue``: a burst's queued messages taken in one go, in order, none lost; and
``eager_sends``: the reader task queues a read's messages in one step, the queue's bound and
the close unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

from tests.bench.wsblast import encode_frame, handshake_reply
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


class _ReaderSteps(trio.abc.Instrument):
    """Counts the steps (runs between two checkpoints) of trio-websocket's reader tasks."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("_reader_task"):
            self.steps += 1


async def _burst_then_close(
    sent: list[str], queue_size: int, *, eager: bool, pause_s: float = 0.0
) -> tuple[list[str | bytes], int, int, int]:
    """A server on loopback sends ``sent`` in one write, then the close; the client takes
    each message with get_message, then what is queued, until the close. Returns (messages,
    how many came from the queue, the reader task's steps meanwhile, the most ever queued)."""
    from collector.wslib import eager_sends, message_queue, trio_websocket

    # every frame and the close in one write: what a busy exchange's socket reads look like
    blob = b"".join(encode_frame(t) for t in sent) + b"\x88\x02\x03\xe8"

    async def handler(stream: trio.SocketStream) -> None:
        async with stream:
            head = b""
            while b"\r\n\r\n" not in head:
                head += await stream.receive_some(4096)
            await stream.send_all(handshake_reply(head) + blob)
            await stream.receive_some(4096)  # the client's close reply: then the server's EOF

    got: list[str | bytes] = []
    drained = most = 0
    steps = _ReaderSteps()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(partial(trio.serve_tcp, host="127.0.0.1"), handler, 0)
            port = listeners[0].socket.getsockname()[1]
            async with trio_websocket.open_websocket_url(
                f"ws://127.0.0.1:{port}/", message_queue_size=queue_size
            ) as ws:
                assert eager_sends(ws) if eager else True
                queue = message_queue(ws)
                assert queue is not None
                trio.lowlevel.add_instrument(steps)
                try:
                    while True:
                        try:
                            got.append(await ws.get_message())
                        except trio_websocket.ConnectionClosed:
                            break
                        most = max(most, queue.statistics().current_buffer_used)
                        while True:
                            try:
                                got.append(queue.receive_nowait())
                            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                                break
                            drained += 1
                        if pause_s:
                            await trio.sleep(pause_s)  # a slow consumer: the queue fills
                finally:
                    trio.lowlevel.remove_instrument(steps)
            nursery.cancel_scope.cancel()
    return got, drained, steps.steps, most


async def test_message_queue_gives_the_queued_messages_in_order_then_the_close() -> None:
    """Taking what is queued between single get_message calls (as Session._gather does)
    gives every message once, in the order sent; then get_message says the connection
    closed. None here would mean the installed trio-websocket no longer has the queue the
    collector drains in a burst (it would fall back to a round per frame, slower)."""
    sent = [f"m{i}" for i in range(2000)]
    got, _, _, _ = await _burst_then_close(sent, 512, eager=False)
    assert got == sent
    got, drained, _, _ = await _burst_then_close(sent, 512, eager=True)
    assert got == sent
    assert drained > len(sent) * 9 // 10  # nearly all from the queue, a read's worth a time


async def test_eager_sends_queue_a_read_in_one_step_of_the_reader() -> None:
    """trio-websocket's own reader task takes a step (a scheduler round) per message it
    queues; with eager_sends, one per socket read: 2,000 small messages (~18 kB), a few
    reads of trio-websocket's 4 KiB."""
    sent = [f"m{i}" for i in range(2000)]
    _, _, plain_steps, _ = await _burst_then_close(sent, 512, eager=False)
    got, _, eager_steps, _ = await _burst_then_close(sent, 512, eager=True)
    assert got == sent
    assert plain_steps >= len(sent)
    assert eager_steps < len(sent) // 10, (eager_steps, plain_steps)


async def test_eager_sends_keep_the_queues_bound() -> None:
    """A consumer slower than the sender: the reader task waits where the queue is full (as
    trio-websocket's own sends do), so the queue never holds more than its size, and every
    message still arrives, in order, before the close."""
    sent = [f"m{i}" for i in range(300)]
    got, _, _, most = await _burst_then_close(sent, 8, eager=True, pause_s=0.002)
    assert got == sent
    assert most == 8  # (full at times: the bound was reached and held)


def test_eager_sends_are_off_without_the_channel() -> None:
    """A connection object without trio-websocket's channel (a release that renamed it):
    False, and the object is untouched (its reader task sends as it always did)."""
    from collector.wslib import eager_sends

    class Renamed:
        _send_channel = "not a channel"

    renamed = Renamed()
    assert eager_sends(renamed) is False  # type: ignore[arg-type]
    assert renamed._send_channel == "not a channel"
    assert eager_sends(object()) is False  # type: ignore[arg-type]


def test_message_queue_is_none_without_the_channel() -> None:
    """A connection object without trio-websocket's channel (a release that renamed it):
    None, and the collector receives with get_message alone."""
    from collector.wslib import message_queue

    class Renamed:
        _recv_channel = "not a channel"

    assert message_queue(Renamed()) is None  # type: ignore[arg-type]
    assert message_queue(object()) is None  # type: ignore[arg-type]
