"""The event listener logs supervisord's URL without its userinfo."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_server_url_is_logged_without_userinfo(tmp_path: Path) -> None:
    """SUPERVISOR_SERVER_URL with user:password@ appears in listener.started as ***@."""
    cfg = tmp_path / "config.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n')
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "TELEGRAM_"))},
        "PYTHONPATH": str(REPO),
        "SUPERVISOR_SERVER_URL": "http://admin:pa55w0rd@127.0.0.1:9001",
    }

    r = subprocess.run(
        [sys.executable, "-m", "ops.listener", "--config", str(cfg)],
        input=b"",
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=30,
    )

    assert r.returncode == 0
    events = [json.loads(line) for line in r.stderr.decode().splitlines()]
    started = [e for e in events if e["event"] == "listener.started"]
    assert [e["server_url"] for e in started] == ["http://***@127.0.0.1:9001"]
    assert b"pa55w0rd" not in r.stderr
