"""The completeness records QA writes are uploaded with the rest (issue 19): the S3 sync
delivers ``{stream}/completeness/{day}/*.completeness.json`` under the host's prefix, to
moto's S3 server on 127.0.0.1; a QA re-run writes the same records again, so they are not
uploaded again."""

from __future__ import annotations

from pathlib import Path

from collector.common import layout
from ops.sync.run import run_once as sync_once
from qa.runner import run_once as qa_once
from tests.ops.s3proxy import S3Proxy
from tests.ops.test_sync import (  # noqa: F401 - fixtures
    body_of,
    bucket,
    fake_aws_env,
    key,
    keys_in,
    moto_port,
    proxy,
    settings_of,
    write_config,
)
from tests.qa.test_ledger_files import two_hours
from tests.qa.test_runner import qa_settings


def test_completeness_records_go_up_with_their_files(
    tmp_path: Path,
    moto_port: int,  # noqa: F811 - the fixture
    bucket: str,  # noqa: F811
    proxy: S3Proxy,  # noqa: F811
) -> None:
    s = settings_of(write_config(tmp_path, proxy.url, bucket, min_age_s=0.0))
    p10, p11 = two_hours(s.data_dir)
    qa_once(qa_settings(s.data_dir))
    records = [layout.completeness_path(p) for p in (p10, p11)]

    sm = sync_once(s)

    rels = [r.relative_to(s.data_dir).as_posix() for r in records]
    assert rels[0] == (
        "binance/BTCUSDT/trade/completeness/2024-03-01/"
        "20240301T100000Z_binance_BTCUSDT_trade.completeness.json"
    )
    assert {key(r) for r in rels} <= keys_in(moto_port, bucket)
    for rel, path in zip(rels, records, strict=True):
        assert body_of(moto_port, bucket, key(rel)) == path.read_bytes()
    assert sm.failures == 0
    # QA again (forced): the records are written again, the same bytes: only the reports
    # (they carry the time of the check) go up again
    qa_once(qa_settings(s.data_dir), force=True)
    proxy.requests.clear()
    sync_once(s)
    puts = [t for m, t, _ in proxy.requests if m == "PUT"]
    assert puts
    assert all(t.endswith(layout.REPORT_SUFFIX) for t in puts)
