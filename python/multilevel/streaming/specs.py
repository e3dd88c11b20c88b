"""Model specs for chunked data: built once on the first complete rows (whose
factor columns carry the levels of all rows), then applied to every chunk."""

from __future__ import annotations

import re
from typing import Any

import formulaic
import numpy as np
import pandas as pd
from formulaic.parser.types import Factor

from multilevel.frames import check_finite
from multilevel.streaming.scan import ColumnMoments

# `center(x)`, `scale(x)`, `standardize(x)` (optionally with ddof=) of a bare column: their state is the
# column's mean and standard deviation over all rows, which the first pass collects.
_MOMENT_TRANSFORM = re.compile(
    r"^(center|scale|standardize)\(\s*(?:`([^`]+)`|([A-Za-z_][A-Za-z0-9_.]*))\s*(?:,\s*ddof\s*=\s*[0-9.]+\s*)?\)$")


def with_global_transform_state(spec: Any, moments: dict[str, ColumnMoments]) -> Any:
    """``spec`` with the state of its stateful transforms computed over all rows.

    The state formulaic found on the prototype rows is replaced by the
    column's mean and standard deviation over every complete row; any other
    data-dependent transform would see one chunk only and is refused.
    """
    if not spec.transform_state:
        return spec
    state = {}
    for key, old in spec.transform_state.items():
        match = _MOMENT_TRANSFORM.match(key.strip())
        column = match and (match.group(2) or match.group(3))
        if not match or column not in moments:
            raise ValueError(
                f"the formula uses {key}, whose state would be computed from one chunk; for data read in chunks, "
                "only center(), scale() and standardize() of a numeric column are computed over all rows; "
                "compute that column before fitting"
            )
        m, ddof = moments[column], old.get("ddof", 1)
        center = m.mean if old.get("center") is not None else None
        if old.get("scale") is None:
            scale = None
        else:
            scale = float(np.sqrt((m.m2 if center is not None else m.sumsq) / (m.n - ddof)))
        state[key] = {**old, "center": center, "scale": scale}
    return spec.update(transform_state=state)


def response_and_spec(formula: str, prototype: pd.DataFrame, moments: dict[str, ColumnMoments]) -> tuple[str, Any]:
    """The response's name and the formula's model spec (lhs and rhs) on the prototype rows,
    with data-dependent transform state taken over all rows (``moments``)."""
    lhs = formula.split("~", 1)[0].strip()
    if lhs in prototype.columns and not pd.api.types.is_numeric_dtype(prototype[lhs]):
        raise ValueError(f"the response {lhs!r} has dtype {prototype[lhs].dtype}; the model needs a numeric response")
    try:
        mm = formulaic.model_matrix(formula, prototype, na_action="raise", output="numpy")
    except Exception as exc:
        raise ValueError(f"could not build the fixed-effects model matrix of {formula!r}: {exc}") from exc
    if mm.lhs.shape[1] != 1:
        raise ValueError(f"the response {lhs!r} must be one numeric column; it expands to {mm.lhs.shape[1]} columns")
    specs = mm.model_spec
    return lhs, specs._update(rhs=with_global_transform_state(specs.rhs, moments))


def plain_columns(spec: Any) -> list[str | None] | None:
    """The data column behind each model-matrix column (None for the intercept) when every term of
    ``spec`` is the intercept or a numeric column taken as it is; None when any term needs formulaic
    (a transform, a categorical, an interaction)."""
    columns: list[str | None] = []
    for term in spec.terms:
        factors = list(term.factors)
        if len(factors) != 1:
            return None
        factor = factors[0]
        if factor.eval_method is Factor.EvalMethod.LITERAL and factor.expr == "1":
            columns.append(None)
            continue
        state = spec.encoder_state.get(factor.expr)
        if factor.eval_method is not Factor.EvalMethod.LOOKUP or state is None or state[0] is not Factor.Kind.NUMERICAL:
            return None
        columns.append(factor.expr)
    names = [str(c) for c in spec.column_names]
    return columns if names == ["Intercept" if c is None else c for c in columns] else None


def _stacked(rows: pd.DataFrame, columns: list[str | None]) -> np.ndarray:
    """The model matrix of :func:`plain_columns`' columns: ones and the columns as float64 (column-major:
    each column written, and later checked, contiguously)."""
    out = np.empty((len(rows), len(columns)), order="F")
    for j, c in enumerate(columns):
        out[:, j] = 1.0 if c is None else rows[c].to_numpy(dtype=float)
    return out


def response_and_matrix(fixed_spec: Any, rows: pd.DataFrame, response: str, where: str,
                        kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """y (m,) and X (m, p) of a chunk's complete rows (X's ``kept`` columns), checked finite.

    A formula of numeric columns only (the common large-data case) is stacked
    directly: formulaic's per-term work costs more than the rest of a GEE
    pass over the chunk.
    """
    lhs_columns, rhs_columns = plain_columns(fixed_spec.lhs), plain_columns(fixed_spec.rhs)
    if lhs_columns is not None and rhs_columns is not None and len(lhs_columns) == 1 and lhs_columns[0] is not None:
        y = rows[lhs_columns[0]].to_numpy(dtype=float, copy=True)
        X = _stacked(rows, rhs_columns)
    else:
        mm = fixed_spec.get_model_matrix(rows, output="numpy", na_action="raise")
        y = np.ascontiguousarray(np.asarray(mm.lhs, dtype=float)[:, 0])
        X = np.asarray(mm.rhs, dtype=float)
    names = [str(c) for c in fixed_spec.rhs.column_names]
    if kept is not None:
        X, names = X[:, kept], [names[j] for j in kept]
    check_finite(y, f"response {response!r} in {where}")
    for j, name in enumerate(names):
        check_finite(X[:, j], f"fixed-effects column {name!r} in {where}")
    return y, X
