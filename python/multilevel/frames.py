"""Accepting data: pandas, polars (eager or lazy), pyarrow or duckdb tables, of which only the used
columns are converted; columns or arrays for weights and offsets; dropping rows with missing values
(counted, warned)."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from difflib import get_close_matches
from typing import Any

import numpy as np
import pandas as pd

_TOKEN = re.compile(r"`([^`]+)`|([A-Za-z_][A-Za-z0-9_.]*)")


def _is_dask(data: Any) -> bool:
    return type(data).__module__.split(".")[0] in ("dask", "dask_expr")


def _narwhals_frame(data: Any) -> Any:
    """``data`` as a narwhals DataFrame or LazyFrame (polars eager or lazy, pyarrow, duckdb, modin, ...),
    or None if narwhals does not take it."""
    import narwhals as nw
    from narwhals.exceptions import DuplicateError

    try:
        return nw.from_native(data)
    except (TypeError, DuplicateError):  # a pyarrow table with a repeated name: converted whole, then refused by name
        return None


def column_names(data: Any) -> list[str]:
    """The column names of a table, without converting (or, for a lazy frame, computing) it.

    Examples
    --------
    >>> import pyarrow as pa
    >>> column_names(pa.table({"y": [1.0], "g": ["a"]}))
    ['y', 'g']
    """
    if isinstance(data, pd.DataFrame):
        return list(data.columns)
    if isinstance(data, dict):
        return list(data)
    frame = None if _is_dask(data) else _narwhals_frame(data)
    if frame is None:
        return list(as_pandas(data).columns)  # raises the TypeError naming what data may be
    return list(frame.collect_schema().names())


def frame_header(data: Any) -> pd.DataFrame:
    """An empty pandas frame with the columns of ``data`` (pandas data itself), to find used columns by name."""
    if isinstance(data, pd.DataFrame):
        return data
    return pd.DataFrame(columns=column_names(data))


def as_pandas(data: Any, columns: Iterable[str] | None = None) -> pd.DataFrame:
    """Return ``data`` as a pandas DataFrame; of a polars (eager or lazy), pyarrow or duckdb table only ``columns``.

    A pandas frame is returned as it is (all columns, its own index). Other
    tables go through narwhals: the columns a model uses are selected before
    anything is converted (a lazy frame computes only those), so a wide table
    with many unused columns costs memory for the used ones only. Names in
    ``columns`` that are not columns are ignored (they were checked earlier).

    Examples
    --------
    >>> as_pandas({"y": [1.0, 2.0]}).shape
    (2, 1)
    >>> import polars as pl
    >>> as_pandas(pl.DataFrame({"y": [1.0, 2.0], "unused": [0, 0]}).lazy(), ["y"]).columns.tolist()
    ['y']
    """
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        return pd.DataFrame(data if columns is None else {c: data[c] for c in dict.fromkeys(columns) if c in data})
    if _is_dask(data):  # lmm and gee read Dask frames on the workers; nothing here collects one silently
        raise TypeError("a Dask frame is fitted on its workers by lmm and gee only; for this model call "
                        ".compute() first (or pass a pandas, polars or pyarrow table)")
    import narwhals as nw

    frame = _narwhals_frame(data)
    if frame is None:
        if hasattr(data, "to_pandas"):  # a table type narwhals does not know, such as a pyarrow RecordBatch
            out = data.to_pandas()
            return out if columns is None else out[[c for c in dict.fromkeys(columns) if c in out.columns]]
        raise TypeError(
            f"data must be a pandas, polars or pyarrow table (or a dict of columns), not {type(data).__name__}"
        )
    wanted = None
    if columns is not None:
        names = frame.collect_schema().names()
        require_unique_columns(columns, pd.DataFrame(columns=names))
        wanted = [c for c in dict.fromkeys(columns) if c in names]
        frame = frame.select(wanted or names[:1])  # with no used column, one column still gives the row count
    if isinstance(frame, nw.LazyFrame):  # a polars LazyFrame, a duckdb relation: compute the selection only
        frame = frame.collect()
    out = frame.to_pandas()
    return out.iloc[:, :0] if wanted == [] else out


def named_columns(header: pd.DataFrame, arguments: dict[str, Any], lists: Iterable[str] = ("groups=",)) -> list[str]:
    """The columns named by arguments such as ``groups=`` or ``weights=``, checked against all of the data's
    columns (so a misspelt name gets its "did you mean"); arrays and None name no column.

    ``arguments`` maps the label an error shows (``"weights="``) to the argument's value: a column
    name, or for the labels in ``lists`` also a list of names (``groups=["school", "class"]``).
    Anything else names no column and is checked where the argument is read.

    Examples
    --------
    >>> named_columns(pd.DataFrame(columns=["y", "id", "w"]), {"groups=": ["id"], "weights=": "w", "time=": None})
    ['id', 'w']
    """
    lists = set(lists)
    names: list[str] = []
    for label, value in arguments.items():
        if isinstance(value, str):
            given = [value]
        elif label in lists and isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            given = list(value)
        else:
            continue
        require_columns(given, header, label)
        names += [c for c in given if c not in names]
    return names


def columns_in(text: str, data: pd.DataFrame) -> list[str]:
    """Names of data columns that occur as identifiers in a formula fragment."""
    found: list[str] = []
    for quoted, bare in _TOKEN.findall(text):
        name = quoted or bare
        candidates = [name]
        if "." in name:  # `np.log` is not a column, but `x.1` might be
            candidates += name.split(".")
        for c in candidates:
            if c in data.columns and c not in found:
                found.append(c)
    return found


def require_columns(names: Iterable[str], data: pd.DataFrame, what: str) -> None:
    """Raise a ValueError naming each column of ``names`` not in ``data`` (or in it more than once)."""
    names = list(names)
    for name in names:
        if name not in data.columns:
            lowered = {str(c).lower(): c for c in data.columns}  # case ignored: 'G' finds 'g'
            close = [lowered[m] for m in get_close_matches(str(name).lower(), list(lowered), n=3)]
            hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise ValueError(f"column {name!r} used in {what} is not in the data{hint}")
    require_unique_columns(names, data)


def require_unique_columns(names: Iterable[str], data: pd.DataFrame) -> None:
    """A ValueError if a used column's name occurs more than once in ``data``.

    ``data[name]`` is then a frame, not a column, and every later step fails in its own way.
    """
    if data.columns.is_unique:
        return
    for name in names:
        count = int(np.sum(data.columns == name))
        if count > 1:
            raise ValueError(f"the data have {count} columns named {name!r}; rename or drop the duplicates")


#: Largest magnitude a used value may have: fits square the data (and 1e154 squared overflows),
#: and the likelihood computations need room beyond that. The smallest nonzero scale mirrors it.
MAX_SCALE = 1e100


def check_scale(values: np.ndarray, label: str) -> None:
    """Raise a ValueError naming ``label`` if its values are too large (or all too small) to fit in doubles.

    A response times 1e300 otherwise fits to NaN standard errors (or an infinite log-likelihood at 1e-300).
    """
    finite = values[np.isfinite(values)]
    scale = float(np.max(np.abs(finite))) if finite.size else 0.0
    if scale > MAX_SCALE or 0.0 < scale < 1.0 / MAX_SCALE:
        raise ValueError(
            f"{label} has values of size {scale:.3g}; the fit squares them, so rescale it to within "
            f"{1.0 / MAX_SCALE:.0e}..{MAX_SCALE:.0e} (e.g. divide by {10.0 ** np.round(np.log10(scale)):.0e})"
        )


def vector_argument(value: Any, data: pd.DataFrame, name: str) -> tuple[np.ndarray | None, str | None]:
    """Resolve a ``weights=``/``offset=`` argument: a column name or an array of n values.

    Returns the values (float64, length n, before row dropping) and the column
    name if one was given.
    """
    if value is None:
        return None, None
    if isinstance(value, str):
        require_columns([value], data, f"{name}=")
        col = data[value]
        if not pd.api.types.is_numeric_dtype(col):
            raise ValueError(f"{name} column {value!r} must be numeric, not {col.dtype}")
        arr = col.to_numpy(dtype=float, na_value=np.nan)
        check_scale(arr, f"{name} column {value!r}")
        return arr, value
    try:
        arr = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a column name or numeric values, one per row: {exc}") from None
    if arr.shape[0] != len(data):
        raise ValueError(f"{name} has {arr.shape[0]} values but the data have {len(data)} rows")
    check_scale(arr, name)
    return arr, None


def numbers_held_as_objects(data: pd.DataFrame, columns: Iterable[str]) -> pd.DataFrame:
    """Use object columns that hold only numbers (and missing values) as numeric, with a warning.

    A numeric column read with ``None`` in it, or built from Python objects,
    has dtype object; formulas would treat it as a factor with one level per
    distinct value (119 levels for 119 numbers) and fail far from the cause.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     numbers_held_as_objects(pd.DataFrame({"x": [1.5, None, 2]}, dtype=object), ["x"]).x.dtype
    dtype('float64')
    """
    converted: dict[str, pd.Series] = {}
    for c in columns:
        col = data[c]
        if col.dtype != object:
            continue
        present = col[col.notna()]
        if len(present) and all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_))
                                for v in present):
            converted[c] = pd.to_numeric(col, errors="coerce").astype(float)
            warnings.warn(f"column {c!r} has dtype object but holds numbers ({len(col) - len(present)} missing); "
                          f"it is used as numeric. Convert it with pd.to_numeric(data[{c!r}]) to say so",
                          UserWarning, stacklevel=5)
    if not converted:
        return data
    data = data.copy()
    for c, values in converted.items():
        data[c] = values
    return data


def drop_missing(
    data: pd.DataFrame, columns: list[str], extra: dict[str, np.ndarray | None]
) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop rows with a missing value in any used column or extra vector.

    Warns with the number of rows dropped per column. Returns the kept data,
    a boolean mask over the original rows, and the count dropped.
    """
    require_unique_columns(columns, data)  # every model passes all its used columns here
    data = numbers_held_as_objects(data, columns)
    missing = np.zeros(len(data), dtype=bool)
    counts: dict[str, int] = {}
    for c in columns:
        m = data[c].isna().to_numpy()
        if m.any():
            counts[c] = int(m.sum())
            missing |= m
    for label, arr in extra.items():
        if arr is not None:
            m = np.isnan(arr)
            if m.any():
                counts[label] = int(m.sum())
                missing |= m
    n_drop = int(missing.sum())
    if n_drop == 0:
        return data, ~missing, 0
    if n_drop == len(data):
        raise ValueError(
            "every row has a missing value in a used column ("
            + ", ".join(f"{k!r}: {v}" for k, v in counts.items())
            + "); nothing is left to fit"
        )
    detail = ", ".join(f"{k!r}: {v}" for k, v in counts.items())
    warnings.warn(
        f"dropped {n_drop} of {len(data)} rows with missing values ({detail})",
        UserWarning,
        stacklevel=4,
    )
    return data.loc[~missing], ~missing, n_drop


def check_finite(values: np.ndarray, label: str) -> None:
    """Raise a ValueError naming ``label`` and the first row if a value is infinite or NaN."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = np.nonzero(bad.reshape(bad.shape[0], -1).any(axis=1))[0]
        raise ValueError(
            f"{label} has {rows.size} non-finite value(s) (first at row {int(rows[0])}); "
            "remove or impute them"
        )


def column_argument(value: Any, data: pd.DataFrame, what: str) -> tuple[pd.DataFrame, str | None]:
    """Resolve an argument that names a column or gives one value per row.

    Returns the data (with the values added as a new column if an array was
    given) and the column's name (None if ``value`` is None).

    Examples
    --------
    >>> df, name = column_argument([1, 2], pd.DataFrame({"y": [0.0, 1.0]}), "time")
    >>> name, df[name].tolist()
    ('time', [1, 2])
    """
    if value is None:
        return data, None
    if isinstance(value, str):
        require_columns([value], data, f"{what}=")
        return data, value
    values = np.asarray(value)
    if values.ndim != 1:
        raise TypeError(
            f"{what}= must be a column name or one value per row (a 1-d array), not {type(value).__name__}"
            + (f" of shape {values.shape}" if values.ndim else "")
        )
    if values.shape[0] != len(data):
        raise ValueError(f"{what} has {values.shape[0]} values but the data have {len(data)} rows")
    name = what
    while name in data.columns:
        name = "_" + name
    return data.assign(**{name: values}), name


def groups_argument(groups: Any, data: pd.DataFrame) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """Grouping columns from a column name, a list of names, or an array of labels (None: no columns)."""
    if isinstance(groups, (list, tuple)) and groups and all(isinstance(g, str) for g in groups):
        require_columns(groups, data, "groups=")
        return data, tuple(groups)
    data, name = column_argument(groups, data, "groups")
    return data, (() if name is None else (name,))
