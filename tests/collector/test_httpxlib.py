"""httpx without its command-line client (collector/common/httpxlib.py): a process of ours
that imports httpx loads neither click nor pygments, and httpx still talks to a real peer."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.collector.importers import runtime_importers

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("collector", "secmaster", "qa", "ops")

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("click") is None or importlib.util.find_spec("pygments") is None,
    reason="click or pygments is not installed: httpx would not import its client anyway",
)


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"hello":"world"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _child(code: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


LOADED = "print(*(m in sys.modules for m in ('click', 'pygments', 'httpx')))"


@pytest.mark.parametrize(
    "module", ["collector.rest", "secmaster.poller", "ops.dataset.backfill", "httpx"]
)
def test_a_process_of_ours_loads_httpx_without_click_or_pygments(module: str) -> None:
    # plain ``import httpx`` is the control: it does load them (so the check can fail)
    out = _child(f"import sys\nimport {module}\n{LOADED}")
    if module == "httpx":
        assert out == ["True", "True", "True"]
    else:
        assert out == ["False", "False", "True"]


def test_httpx_through_it_still_talks_to_a_real_peer(http_port: int) -> None:
    out = _child(
        "import sys\n"
        "from collector.common.httpxlib import httpx\n"
        f"r = httpx.get('http://127.0.0.1:{http_port}/x', timeout=10)\n"
        "print(r.status_code, r.json()['hello'])\n" + LOADED
    )
    assert out == ["200", "world", "False", "False", "True"]


def test_every_module_of_ours_imports_httpx_through_httpxlib() -> None:
    direct = runtime_importers(PACKAGES, "httpx")
    assert direct == {"collector/common/httpxlib.py": [21]}
