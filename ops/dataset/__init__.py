"""One dataset from every region: merge the hosts' copies, fill what all missed, publish.

``python -m ops.dataset build|run`` (see ``__main__``) reads every host's delivered files,
merges them (trades by id, books by in-sync interval, L3 by sequence), fetches from the
exchange's REST API only what every host missed, and writes Parquet with Hive partitions plus
a completeness table. :func:`load` reads it back as a polars LazyFrame.

Modules: ``settings`` ([dataset]), ``store`` (local dir / S3), ``inventory`` (what each host
delivered, by the layout module), ``markers`` (a host's own gap/resync/disconnect markers),
``frames`` (validated parsed files), ``copies`` (QA verdicts and the gate), ``trades``,
``books``, ``l3`` (the merges, pure), ``backfill`` (REST), ``output`` (keys, Parquet,
completeness), ``build`` (one hour, one run), ``read`` (:func:`load`).
"""

from __future__ import annotations

from ops.dataset.read import load

__all__ = ["load"]
