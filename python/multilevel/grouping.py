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


@dataclass(frozen=True)
class GroupingLevels:
    """The levels of a grouping factor without its rows: what maps any row to its level.

    Built once from the distinct keys of all rows (for data that arrive in
    chunks), then applied to each chunk; levels are in :func:`make_grouping`'s
    order, so a chunked fit labels its levels as the in-memory fit does.
    Keys match by value, so ``308`` and ``308.0`` are the same level.
    """

    name: str
    columns: tuple[str, ...]
    levels: pd.Index  # (nlevels,) labels, as make_grouping gives them
    keys: pd.Index  # (nlevels,) the key values of each level (a MultiIndex for several columns)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    def codes(self, data: pd.DataFrame) -> np.ndarray:
        """Level of each row of ``data`` (int32), -1 for a key not among the levels."""
        if len(self.columns) == 1:
            found = self.keys.get_indexer(data[self.columns[0]])
        else:
            found = self.keys.get_indexer(pd.MultiIndex.from_frame(data[list(self.columns)]))
        return np.asarray(found, dtype=np.int32)


def grouping_levels(keys: pd.DataFrame, columns: tuple[str, ...]) -> GroupingLevels:
    """:class:`GroupingLevels` from the distinct keys of the data (a frame with ``columns``, no missing values).

    Examples
    --------
    >>> keys = pd.DataFrame({"a": ["y", "x", "x"], "b": [1, 2, 1]})
    >>> gl = grouping_levels(keys, ("a", "b"))
    >>> list(gl.levels), gl.codes(pd.DataFrame({"a": ["x", "y"], "b": [2.0, 1.0]})).tolist()
    (['x:1', 'x:2', 'y:1'], [1, 2])
    """
    keys = keys[list(columns)].drop_duplicates().reset_index(drop=True)
    grouping = make_grouping(keys, columns)
    first = np.empty(grouping.nlevels, dtype=np.int64)
    first[grouping.codes[::-1]] = np.arange(len(keys) - 1, -1, -1)  # first row of each level
    ordered = keys.iloc[first]
    index = pd.Index(ordered[columns[0]]) if len(columns) == 1 else pd.MultiIndex.from_frame(ordered)
    return GroupingLevels(grouping.name, tuple(columns), grouping.levels, index)
