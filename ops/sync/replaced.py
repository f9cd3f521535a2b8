"""Previous versions kept by ``collector rebuild --in-place``, removed once the new one is
delivered.

The rebuild keeps what it replaced under ``{data_dir}/.rebuild/prev/{path}`` (the file, its
QA report) with ``{path}.replaced.json`` naming the new version's SHA-256. A sync run that
finds the ledger holding that SHA-256 for the same path, bucket and key (the new version is
in S3, checksum verified) deletes the kept version: S3 has the new one, and the bucket's
versioning the old. Until then it stays, so a rebuild can always be undone by hand. Local
files only; no S3 request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import orjson
import structlog

from collector.common import layout
from ops.sync.ledger import Delivery
from ops.sync.settings import S3Settings

log = structlog.get_logger()


def has_replaced(data_dir: Path) -> bool:
    return layout.replaced_dir(data_dir).is_dir()


def prune_replaced(settings: S3Settings, rows: Mapping[str, Delivery]) -> int:
    """Delete every kept previous version whose new version the ledger shows delivered;
    returns how many."""
    root = layout.replaced_dir(settings.data_dir)
    pruned = 0
    for manifest in sorted(root.rglob(f"*{layout.REPLACED_SUFFIX}")):
        if manifest.is_symlink() or not manifest.is_file():
            continue
        try:
            record = orjson.loads(manifest.read_bytes())
            rel, sha = record["file"], record["sha256"]
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
            log.warning("sync.replaced_unreadable", path=str(manifest))
            continue
        prev = manifest.with_name(manifest.name.removesuffix(layout.REPLACED_SUFFIX))
        if not isinstance(rel, str) or prev.relative_to(root).as_posix() != rel:
            log.warning("sync.replaced_unreadable", path=str(manifest))
            continue  # a manifest must name the file it sits beside
        row = rows.get(rel)
        if (
            row is None
            or row.sha256 != sha
            or row.bucket != settings.bucket
            or row.key != settings.key_for(rel)
        ):
            continue  # the new version is not delivered yet
        for p in (prev, layout.report_path(prev), manifest):
            p.unlink(missing_ok=True)
        pruned += 1
        _remove_empty_dirs(manifest.parent, root)
    if pruned:
        log.info("sync.replaced_pruned", files=pruned)
    return pruned


def _remove_empty_dirs(path: Path, root: Path) -> None:
    while path != root and root in path.parents:
        try:
            os.rmdir(path)
        except OSError:
            return
        path = path.parent
