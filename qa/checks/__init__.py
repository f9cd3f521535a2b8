"""Pure data-quality checks: a parsed file's frame (and its raw file's events) → findings.

Nothing here touches the disk, the clock or the network; :mod:`qa.reader` turns files into
the inputs, :mod:`qa.runner` writes the reports. One module per subject:

- :mod:`~qa.checks.findings`: ``Finding``, the severities, ``worst`` and ``rate``;
- :mod:`~qa.checks.context`: the inputs (``FrameInput``, ``Context``);
- :mod:`~qa.checks.specs`: ``TypeSpec`` and :data:`SPECS`, the per data type tables;
- :mod:`~qa.checks.values`: row count; empty, missing and ill-formed values;
- :mod:`~qa.checks.order`: times going backwards, the hour's coverage and silences;
- :mod:`~qa.checks.ids`: duplicate, backwards and missing ids;
- :mod:`~qa.checks.book`: crossed books and levels out of order;
- :mod:`~qa.checks.stats`: ``describe`` (pandas' statistics);
- :mod:`~qa.checks.frame`: ``check_frame``, every row-level check of one file;
- :mod:`~qa.checks.raw`: what the raw file of the hour says (``RawSummary``, made by
  :mod:`qa.replay`): its markers and record count (``check_raw``), and the frames that gave
  no row (``check_frames``).

Import each from its module: the package itself imports nothing, so a reader of the QA
ledger (``ops status``, qa/ledger.py needs only :mod:`~qa.checks.raw`) never loads polars.
"""
