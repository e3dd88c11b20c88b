"""The fixed-effects part of a model: response and model matrix from a
formula (formulaic), and detection of aliased (linearly dependent) columns."""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from multilevel.formula import formula_sides, refuse_bars, require_formula_string
from multilevel.frames import check_finite, check_scale, columns_in

# Names a formula may use that are not data columns.
_CONTEXT_NAMES = {"np", "numpy", "C", "I", "center", "scale", "standardize", "poly", "bs", "lag", "log", "exp", "sqrt"}


@dataclass
class FixedDesign:
    """Response and fixed-effects model matrix.

    Attributes
    ----------
    y : (n,) float64
    X : (n, p) float64 (any memory order), aliased columns removed
    names : list of str
        Column names of ``X`` as formulaic gives them (``Intercept``, ``x``, ``f[T.b]``).
    response : str
    spec : formulaic ModelSpec of the full (before dropping) model matrix, for prediction
    kept : (p,) indices of the kept columns in the full model matrix
    dropped : names of the aliased columns that were removed
    """

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    response: str
    spec: Any = None
    kept: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    dropped: list[str] = field(default_factory=list)
    #: Means of the numeric variables the formula reads (the reference grid of emmeans); None if unknown.
    numeric_means: dict[str, float] | None = None

    def model_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """The kept fixed-effects columns for new data (missing values give NaN rows)."""
        mm = self.spec.get_model_matrix(newdata, na_action="ignore")
        return np.asarray(mm, dtype=float)[:, self.kept]


def missing_formula_variables(formula: str, data: pd.DataFrame) -> list[str]:
    """Variables a formula needs that are neither data columns nor known helpers."""
    require_formula_string(formula)
    try:
        needed = formulaic.Formula(formula).required_variables
    except Exception as exc:  # formulaic's parse errors come in several types
        raise ValueError(f"cannot parse formula {formula!r}: {exc}") from exc
    # formulaic reads a quoted name with a dot (`Informed.liking`) as an attribute of `Informed` in
    # required_variables, though it evaluates the quoted column: such a prefix is not missing.
    quoted_roots = {q.split(".")[0] for q in re.findall(r"`([^`]+)`", formula) if q in data.columns}
    return sorted(str(v) for v in needed if str(v) not in data.columns and str(v) not in _CONTEXT_NAMES
                  and str(v) not in quoted_roots)


def fixed_design(formula: str, data: pd.DataFrame) -> FixedDesign:
    """Build y and X for ``formula`` (no random terms) on ``data`` without missing values.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 2.0]})
    >>> d = fixed_design("y ~ x", df)
    >>> d.names, d.X.shape
    (['Intercept', 'x'], (3, 2))
    """
    lhs = formula_sides(formula)[0]
    refuse_bars(formula)  # lmm passes its fixed part; gls and gee take no bars
    if lhs in data.columns and not pd.api.types.is_numeric_dtype(data[lhs]):
        raise ValueError(
            f"the response {lhs!r} has dtype {data[lhs].dtype}; a linear model needs a numeric response"
        )
    _warn_numbers_as_categories(formula, data, lhs)
    try:
        # numpy output: one (n, p) array, no per-column frame to copy from again.
        mm = formulaic.model_matrix(formula, data, na_action="raise", output="numpy")
    except Exception as exc:
        raise ValueError(f"could not build the fixed-effects model matrix of {formula!r}: {exc}") from exc
    if not hasattr(getattr(mm, "lhs", None), "shape") or not hasattr(mm.rhs, "model_spec"):  # "~ x", or several right-hand sides
        raise ValueError(f"formula {formula!r} must be 'response ~ predictors' with one right-hand side")
    if mm.lhs.shape[1] != 1:
        raise ValueError(
            f"the response {lhs!r} must be one numeric column; it expands to {mm.lhs.shape[1]} columns"
        )
    y = np.ascontiguousarray(np.asarray(mm.lhs, dtype=float)[:, 0])
    check_finite(y, f"response {lhs!r}")
    check_scale(y, f"response {lhs!r}")
    X = np.asarray(mm.rhs, dtype=float)  # any memory order: the core reads strided arrays
    names = [str(c) for c in mm.rhs.model_spec.column_names]
    for j, name in enumerate(names):
        check_finite(X[:, j], f"fixed-effects column {name!r}")
        check_scale(X[:, j], f"fixed-effects column {name!r}")
    factor = _r_factor_with_response(X, y)
    aliased = [j for j in factor.aliased() if j < X.shape[1]]
    kept = np.array([j for j in range(X.shape[1]) if j not in aliased], dtype=int)
    if kept.size >= y.shape[0]:
        raise ValueError(
            f"{y.shape[0]} rows cannot estimate {kept.size} fixed-effect coefficients (with a residual variance); "
            "simplify the fixed part"
        )
    _check_response_varies(y, X, factor, lhs)
    dropped = [names[j] for j in aliased]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient, so dropping {len(dropped)} "
            f"column(s): {', '.join(dropped)}",
            UserWarning,
            stacklevel=4,
        )
        X = np.ascontiguousarray(X[:, kept])
        names = [names[j] for j in kept]
    spec = mm.rhs.model_spec
    del mm
    return FixedDesign(y, X, names, lhs, spec, kept, dropped, numeric_means(spec, data))


def numeric_means(spec: Any, data: pd.DataFrame) -> dict[str, float]:
    """Means of the numeric (not boolean) data columns a model spec reads, for reference grids."""
    out = {}
    for name in sorted(str(v) for v in spec.required_variables):
        if name in data.columns and pd.api.types.is_numeric_dtype(data[name]) \
                and not pd.api.types.is_bool_dtype(data[name]):
            out[name] = float(data[name].mean())
    return out


def _warn_numbers_as_categories(formula: str, data: pd.DataFrame, response: str) -> None:
    """Warn about an object column of numbers: formulaic makes it a factor with a level per distinct value."""
    for c in columns_in(formula, data):
        col = data[c]
        if c != response and col.dtype == object and pd.api.types.infer_dtype(col, skipna=True) in (
                "integer", "floating", "mixed-integer-float", "decimal"):
            warnings.warn(
                f"column {c!r} holds numbers with dtype object, so it enters the model as a categorical factor "
                f"({col.nunique()} levels); convert it with .astype(float) if it is numeric",
                UserWarning,
                stacklevel=5,
            )


#: Rows per block when the response joins the model matrix for one QR (memory O(block * p)).
_BLOCK = 200_000


def _r_factor_with_response(X: np.ndarray, y: np.ndarray) -> ColumnRFactor:
    """The R factor of ``[X y]``: its first p columns are X's alone (the aliasing test), and its last
    diagonal is the least-squares residual norm of y on X, for free."""
    factor = ColumnRFactor(X.shape[1] + 1)
    for start in range(0, y.shape[0], _BLOCK):
        factor.add_rows(np.column_stack([X[start:start + _BLOCK], y[start:start + _BLOCK]]), chunk=_BLOCK)
    return factor


#: A response whose residual after least squares on X is below this fraction of its norm is fitted exactly.
_EXACT_FIT = 1e-11


def _check_response_varies(y: np.ndarray, X: np.ndarray, factor: ColumnRFactor, label: str) -> None:
    """A ValueError if the response is constant or (to rounding) an exact linear function of X.

    Every model here then has nothing left to estimate a variance from: lmm and the GLMM core fail to
    factor, gls returns an infinite log-likelihood, gee zero or NaN standard errors.
    """
    if y.size and np.all(y == y[0]):
        raise ValueError(f"the response {label!r} is constant (every value is {float(y[0])!r}); there is nothing to model")
    p = factor.p - 1
    if factor.r.shape[0] > p:
        residual = abs(factor.r[p, p]) * factor.scale[p]
    else:  # fewer rows than columns (some aliased): the R factor has no row for y; rare and small
        residual = float(np.linalg.norm(y - X @ np.linalg.lstsq(X, y, rcond=None)[0]))
    if residual <= _EXACT_FIT * float(np.linalg.norm(y)):
        raise ValueError(
            f"the response {label!r} is an exact linear function of the fixed effects (zero residuals), so no "
            "variance can be estimated; check that the response is not among (or computed from) the predictors"
        )


class ColumnRFactor:
    """The R factor of a QR of a matrix's rows, updated chunk by chunk and mergeable.

    ``r`` is the R factor of ``X / scale``, with ``scale`` a power of two per
    column fixed by the first rows, so that neither a column of 1e300s nor
    one of 1e-300s over- or underflows, and the aliasing test below is
    scale-invariant.
    """

    def __init__(self, p: int) -> None:
        self.p = p
        self.scale: np.ndarray | None = None
        self.r = np.zeros((0, p))

    def add_rows(self, X: np.ndarray, chunk: int = 200_000) -> ColumnRFactor:
        """Add the rows of ``X`` (m, p)."""
        for start in range(0, X.shape[0], chunk):
            block = X[start : start + chunk]
            if self.scale is None:
                self.scale = _power_of_two_scale(block)
            self.r = np.linalg.qr(np.vstack([self.r, block / self.scale]), mode="r")
        return self

    def merge(self, other: ColumnRFactor) -> ColumnRFactor:
        """Add the rows another factor has seen."""
        if other.scale is None:
            return self
        if self.scale is None:
            self.scale, self.r = other.scale, other.r
            return self
        self.r = np.linalg.qr(np.vstack([self.r, other.r * (other.scale / self.scale)]), mode="r")
        return self

    def aliased(self, tol: float = 1e-7) -> list[int]:
        """Columns that are (numerically) linear combinations of earlier ones.

        Like R's ``qr`` with limited pivoting (as lme4 uses it): column j is
        aliased when its residual after projection on the earlier columns is
        below ``tol`` times its norm. With an unpivoted QR that residual is
        ``|R_jj|``: one factorization, O(n p^2), whatever the number of
        aliased columns.
        """
        norms = np.linalg.norm(self.r, axis=0)
        k = self.r.shape[0]
        return [j for j in range(self.p) if norms[j] == 0.0 or j >= k or abs(self.r[j, j]) <= tol * norms[j]]


def _power_of_two_scale(block: np.ndarray) -> np.ndarray:
    """Per column, the power of two nearest its largest absolute value (1 for a zero column)."""
    big = np.max(np.abs(block), axis=0) if block.shape[0] else np.zeros(block.shape[1])
    exponent = np.where(big > 0, np.frexp(np.where(big > 0, big, 1.0))[1], 1)
    return np.ldexp(1.0, exponent - 1)


def aliased_columns(X: np.ndarray, tol: float = 1e-7) -> list[int]:
    """Columns of ``X`` (n, p) that are (numerically) linear combinations of earlier ones.

    See :meth:`ColumnRFactor.aliased`; memory stays O(chunk * p).

    Examples
    --------
    >>> X = np.column_stack([np.ones(4), [0.0, 1, 2, 3], [1e300, 1e300, 1e300, 1e300]])
    >>> aliased_columns(X)
    [2]
    """
    if X.shape[1] == 0:
        return []
    return ColumnRFactor(X.shape[1]).add_rows(X).aliased(tol)
