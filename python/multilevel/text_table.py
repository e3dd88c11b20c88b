"""Plain-text tables for model summaries."""

from __future__ import annotations

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
