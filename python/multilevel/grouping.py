"""Grouping factors: the levels of one or more columns, and each row's level.

One object serves every model: :class:`GroupingLevels` is what maps any row
to its level (labels and the key values behind them), and :class:`Grouping`
adds the codes of the rows it was made from. Data read in chunks build the
levels once from the distinct keys of all chunks (:func:`grouping_levels`)
and apply them to each chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class GroupingLevels:
    """The levels of a grouping factor: labels, and the key values that map a row to its level.

    Levels are the observed ones, sorted (categoricals in category order),
    as R's ``factor`` gives them; interactions label levels ``"a:b"``. Keys
    match by value, so ``308`` and ``308.0`` are the same level.
    """

    name: str
    levels: pd.Index  # (nlevels,) labels
    columns: tuple[str, ...]
    keys: pd.Index  # (nlevels,) key values of each level (a MultiIndex for several columns)

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    def codes_of(self, data: pd.DataFrame) -> np.ndarray:
        """Level of each row of ``data`` (int32), -1 for a key not among the levels."""
        if len(self.columns) == 1:
            found = self.keys.get_indexer(data[self.columns[0]])
        else:
            found = self.keys.get_indexer(pd.MultiIndex.from_frame(data[list(self.columns)]))
        return np.asarray(found, dtype=np.int32)


@dataclass(frozen=True)
class Grouping(GroupingLevels):
    """:class:`GroupingLevels` with the level of each row it was made from."""

    codes: np.ndarray = None  # type: ignore[assignment]  # (n,) int32


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
        return Grouping(columns[0], levels, tuple(columns), levels, codes.astype(np.int32))
    key = parts[0][0]
    for c, lev in parts[1:]:
        key = key * len(lev) + c  # mixed radix: sorts like the tuple of codes
    codes, keys = pd.factorize(key, sort=True)
    labels, values = [], []
    for _, lev in reversed(parts):
        labels.append(np.asarray(lev.astype(str))[keys % len(lev)])
        values.append(lev[keys % len(lev)])
        keys = keys // len(lev)
    levels = pd.Index([":".join(t) for t in zip(*reversed(labels))])
    key_index = pd.MultiIndex.from_arrays(list(reversed(values)), names=list(columns))
    return Grouping(":".join(columns), levels, tuple(columns), key_index, codes.astype(np.int32))


def grouping_levels(keys: pd.DataFrame, columns: tuple[str, ...]) -> GroupingLevels:
    """:class:`GroupingLevels` from the distinct keys of the data (a frame with ``columns``, no missing values).

    The levels and their order are :func:`make_grouping`'s on the same rows.

    Examples
    --------
    >>> keys = pd.DataFrame({"a": ["y", "x", "x"], "b": [1, 2, 1]})
    >>> gl = grouping_levels(keys, ("a", "b"))
    >>> list(gl.levels), gl.codes_of(pd.DataFrame({"a": ["x", "y"], "b": [2.0, 1.0]})).tolist()
    (['x:1', 'x:2', 'y:1'], [1, 2])
    """
    g = make_grouping(keys[list(columns)].drop_duplicates().reset_index(drop=True), columns)
    return GroupingLevels(g.name, g.levels, g.columns, g.keys)
