"""Model specs for chunked data: built once on the first complete rows (whose
factor columns carry the levels of all rows), then applied to every chunk."""

from __future__ import annotations

import re
from typing import Any

import formulaic
import numpy as np
import pandas as pd

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


def response_and_matrix(fixed_spec: Any, rows: pd.DataFrame, response: str, where: str,
                        kept: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """y (m,) and X (m, p) of a chunk's complete rows (X's ``kept`` columns), checked finite."""
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
