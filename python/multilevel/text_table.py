"""Plain-text tables for model summaries."""

from __future__ import annotations

import html
from typing import Any

import pandas as pd


def aligned_table(table: pd.DataFrame, left: int) -> str:
    """Plain-text table: the first ``left`` columns left-aligned, the rest right-aligned.

    Examples
    --------
    >>> print(aligned_table(pd.DataFrame({"name": ["a"], "value": ["1.5"]}), 1))
     name value
     a      1.5
    """
    cells = [list(map(str, table.columns))] + [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
    lines = []
    for r in cells:
        parts = [v.ljust(w) if j < left else v.rjust(w) for j, (v, w) in enumerate(zip(r, widths))]
        lines.append(" " + " ".join(parts).rstrip())
    return "\n".join(lines)


def data_notes(fixed: Any, n_dropped: int) -> list[str]:
    """Summary notes on the data: aliased fixed-effect columns dropped, rows with missing values dropped."""
    notes = []
    if fixed is not None and fixed.dropped:
        notes.append("NOTE: dropped aliased fixed-effect column(s): " + ", ".join(fixed.dropped))
    if n_dropped:
        notes.append(f"NOTE: {n_dropped} row(s) with missing values were dropped.")
    return notes


def html_report(header: list[str], tables: list[pd.DataFrame], lines: list[str]) -> str:
    """HTML of a model summary: bold header lines, tables (a coefficient table keeps its index), plain lines."""
    parts = [f"<p><b>{html.escape(line)}</b></p>" for line in header]
    for table in tables:
        keep_index = not isinstance(table.index, pd.RangeIndex)
        parts.append(table.to_html(index=keep_index, float_format=lambda v: f"{v:.6g}"))
    parts.extend(f"<p>{html.escape(line)}</p>" for line in lines)
    return "\n".join(parts)
