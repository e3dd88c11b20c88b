"""Model specs for chunked data: built once on the first complete rows (whose
factor columns carry the levels of all rows), then applied to every chunk."""

from __future__ import annotations

from typing import Any

import formulaic
import numpy as np
import pandas as pd

from multilevel.frames import check_finite


def refuse_stateful_transforms(spec: Any) -> None:
    """A transform whose state comes from the data (``center``, ``scale``) would see one chunk only: refuse it."""
    if spec.transform_state:
        names = ", ".join(sorted(spec.transform_state))
        raise ValueError(
            f"the formula uses {names}, whose state (a mean, a scale) would be computed from one chunk; "
            "for data read in chunks, compute that column before fitting"
        )


def response_and_spec(formula: str, prototype: pd.DataFrame) -> tuple[str, Any]:
    """The response's name and the formula's model spec (lhs and rhs) on the prototype rows."""
    lhs = formula.split("~", 1)[0].strip()
    if lhs in prototype.columns and not pd.api.types.is_numeric_dtype(prototype[lhs]):
        raise ValueError(f"the response {lhs!r} has dtype {prototype[lhs].dtype}; the model needs a numeric response")
    try:
        mm = formulaic.model_matrix(formula, prototype, na_action="raise", output="numpy")
    except Exception as exc:
        raise ValueError(f"could not build the fixed-effects model matrix of {formula!r}: {exc}") from exc
    if mm.lhs.shape[1] != 1:
        raise ValueError(f"the response {lhs!r} must be one numeric column; it expands to {mm.lhs.shape[1]} columns")
    refuse_stateful_transforms(mm.model_spec.rhs)
    return lhs, mm.model_spec


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
