"""All row-level checks of one parsed file, in report order: row count, values, time order,
ids, the hour, then the data type's extra checks; and the file's statistics."""

from __future__ import annotations

from typing import Any

from qa.checks.context import Context, FrameInput
from qa.checks.findings import Finding
from qa.checks.ids import check_ids
from qa.checks.order import check_hour, check_order
from qa.checks.specs import TypeSpec
from qa.checks.stats import describe
from qa.checks.values import check_row_count, check_values


def check_frame(
    spec: TypeSpec, data: FrameInput, ctx: Context
) -> tuple[list[Finding], dict[str, Any]]:
    """Run every row-level check of ``spec`` on ``data``. Returns findings and statistics."""
    df = data.df
    lines = df.height + data.ragged
    findings = [check_row_count(lines, ctx)]
    if lines == 0:
        return findings, {}
    value_findings, n_bad_rows = check_values(spec, data, ctx, lines)
    findings.extend(value_findings)
    findings.extend(check_order(df, spec, ctx, lines))
    if spec.id_col and spec.id_col in df.columns:
        findings.append(check_ids(df, spec.id_col, ctx, lines))
    findings.append(check_hour(df, spec, ctx))
    for extra in spec.extra:
        findings.extend(extra(df, ctx))

    stats = {
        "rows": lines,
        "bad_rows": n_bad_rows,
        "describe": describe(df, spec.columns),
    }
    return findings, stats
