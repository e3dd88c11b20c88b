"""Grouping factors: integer codes and level labels from one or more columns."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Grouping:
    """Codes 0..nlevels-1 per row and the label of each level.

    Levels are the observed ones, sorted (categoricals in category order),
    as R's ``factor`` gives them; interactions label levels ``"a:b"``.
    """

    name: str
    codes: np.ndarray  # (n,) int32
    levels: pd.Index  # (nlevels,)
    columns: tuple[str, ...]

    @property
    def nlevels(self) -> int:
        return len(self.levels)


def _factorize(col: pd.Series) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(col, sort=True)
    return codes.astype(np.int64), pd.Index(uniques)


def make_grouping(data: pd.DataFrame, columns: tuple[str, ...]) -> Grouping:
    """Codes for the interaction of ``columns`` (one column: the column itself).

    Examples
    --------
    >>> df = pd.DataFrame({"a": ["x", "y", "x"], "b": [1, 1, 2]})
    >>> g = make_grouping(df, ("a", "b"))
    >>> list(g.levels), g.codes.tolist()
    (['x:1', 'x:2', 'y:1'], [0, 2, 1])
    """
    parts = [_factorize(data[c]) for c in columns]
    if len(parts) == 1:
        codes, levels = parts[0]
        return Grouping(columns[0], codes.astype(np.int32), levels, columns)
    key = parts[0][0]
    for c, lev in parts[1:]:
        key = key * len(lev) + c  # mixed radix: sorts like the tuple of codes
    codes, keys = pd.factorize(key, sort=True)
    labels = []
    for _, lev in reversed(parts):
        labels.append(np.asarray(lev.astype(str))[keys % len(lev)])
        keys = keys // len(lev)
    levels = pd.Index([":".join(t) for t in zip(*reversed(labels))])
    return Grouping(":".join(columns), codes.astype(np.int32), levels, columns)
