"""Plain-text tables of the operator commands (``ops status``, ``ops.fleet plan``)."""

from __future__ import annotations


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, trailing blanks stripped: one line per row."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    out = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out


def cell(value: object) -> str:
    """A table cell: ``-`` for unknown, ``yes``/``NO`` for booleans (NO stands out)."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    return str(value)


def needs_a_human(problems: list[str], all_good: str) -> list[str]:
    """The closing lines of a status: every problem listed, or ``all_good``."""
    if not problems:
        return [all_good]
    return [f"NEEDS A HUMAN ({len(problems)}):", *(f"  - {p}" for p in problems)]
