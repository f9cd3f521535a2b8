"""Find the closed files under the data directory (pure file-system walk, no S3).

Only the contract layout is entered:
``{data_dir}/{exchange}/{symbol}/{data_type}/{parsed|raw|completeness}/{YYYY-MM-DD}/``
(``layout.SYNCED_KINDS``) and only names ending ``.csv.gz``, ``.jsonl.gz`` (closed data files),
``.qa.json`` (QA reports) or ``.completeness.json`` (QA's completeness records) are returned
(``layout.CLOSED_SUFFIXES``).
``.part`` files, status.json, the ledger, lock files and dot entries are never looked at.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from collector.common.layout import CLOSED_SUFFIXES, SYNCED_KINDS
from collector.common.layout import DATE_DIR as _DATE


class LocalFile(NamedTuple):
    """One closed file: ``rel`` is its POSIX path relative to the data directory, ``path``
    its full path. A NamedTuple of strs: a no-change run builds one per file, and Path
    objects or frozen dataclasses would cost more than the scan itself."""

    rel: str
    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True, slots=True)
class ScanResult:
    files: list[LocalFile]
    young: int  # closed files skipped because they changed less than min_age_s ago


def is_closed_name(name: str) -> bool:
    return name.endswith(CLOSED_SUFFIXES) and not name.startswith(".")


def _subdirs(path: str) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            entries = list(it)
    except (FileNotFoundError, NotADirectoryError):
        return
    for e in entries:
        if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
            yield e


def _day_dirs(data_dir: Path) -> Iterator[tuple[str, str]]:
    """``(rel_dir, abs_dir)`` of every ``{exchange}/{symbol}/{data_type}/{kind}/{date}``
    (``kind`` in ``SYNCED_KINDS``)."""
    for ex in _subdirs(str(data_dir)):
        for sym in _subdirs(ex.path):
            for dt in _subdirs(sym.path):
                for kind in _subdirs(dt.path):
                    if kind.name not in SYNCED_KINDS:
                        continue
                    for day in _subdirs(kind.path):
                        if _DATE.fullmatch(day.name):
                            rel = f"{ex.name}/{sym.name}/{dt.name}/{kind.name}/{day.name}"
                            yield rel, day.path


def scan_closed(data_dir: Path, *, now_ns: int, min_age_s: float) -> ScanResult:
    """Every closed file, sorted by relative path; files younger than ``min_age_s`` are skipped."""
    files: list[LocalFile] = []
    young = 0
    settle_ns = int(min_age_s * 1e9)
    for rel_dir, day in _day_dirs(data_dir):
        try:
            with os.scandir(day) as it:
                entries = list(it)
        except FileNotFoundError:
            continue
        for e in entries:
            if not is_closed_name(e.name) or not e.is_file(follow_symlinks=False):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue
            if now_ns - st.st_mtime_ns < settle_ns:
                young += 1
                continue
            files.append(LocalFile(f"{rel_dir}/{e.name}", e.path, st.st_size, st.st_mtime_ns))
    files.sort(key=lambda f: f.rel)
    return ScanResult(files=files, young=young)
