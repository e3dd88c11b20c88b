"""The fixed-effects part of a model: response, model matrix and ``offset(...)`` terms from a
formula (formulaic, with the names the formula takes from the caller's scope), and detection of
aliased (linearly dependent) columns."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from multilevel.formula import FormulaContext, formula_context, formula_sides, refuse_bars, require_formula_string
from multilevel.formula.offsets import split_offsets
from multilevel.formula.responses import cbind_response, refuse_cbind
from multilevel.frames import (
    as_pandas,
    check_finite,
    check_scale,
    columns_in,
    frame_header,
    named_columns,
    require_columns,
)

# Names a formula may use that are not data columns (formulaic's own are not required variables at all).
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
    numeric_means : means of the numeric variables the formula reads
    context : the names the formula takes from the caller's scope (:class:`~multilevel.formula.FormulaContext`)
    offset : (n,) float64 or None
        Sum of the formula's ``offset(...)`` terms on the rows (not the ``offset=`` argument).
    offset_terms : list of (expression, formulaic ModelSpec)
        The ``offset(...)`` terms, to evaluate them on new data.
    trials : (n,) float64 or None
        For a ``cbind(successes, failures)`` response (``y`` is then ``successes / trials``):
        ``successes + failures``, the binomial prior weights (times any ``weights=``).
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
    context: FormulaContext | None = None
    offset: np.ndarray | None = field(default=None, repr=False)
    offset_terms: list[tuple[str, Any]] = field(default_factory=list)
    trials: np.ndarray | None = field(default=None, repr=False)

    def model_matrix(self, newdata: pd.DataFrame) -> np.ndarray:
        """The kept fixed-effects columns for new data (missing values give NaN rows)."""
        mm = evaluate_spec(self.spec, newdata, getattr(self, "context", None))
        return np.asarray(mm, dtype=float)[:, self.kept]

    def offset_for(self, newdata: pd.DataFrame) -> np.ndarray | None:
        """The sum of the formula's ``offset(...)`` terms on new data; None if the formula has none.

        Examples
        --------
        >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 2.0], "x": [0.0, 1.0, 3.0, 2.0], "t": [1.0, 2.0, 4.0, 1.0]})
        >>> fixed_design("y ~ x + offset(log(t))", df).offset_for(pd.DataFrame({"x": [1.0], "t": [np.e]}))
        array([1.])
        """
        total = None
        for _, spec in getattr(self, "offset_terms", []):
            values = np.asarray(evaluate_spec(spec, newdata, getattr(self, "context", None)), dtype=float)[:, 0]
            total = values if total is None else total + values
        return total


def evaluate_spec(spec: Any, data: pd.DataFrame, context: FormulaContext | None) -> Any:
    """A formulaic model spec on new data with the formula's context (missing values give NaN rows).

    Names the context lost when its result was pickled (a lambda, say) get an error that says so.
    """
    try:
        return spec.get_model_matrix(data, na_action="ignore", context=context)
    except Exception as exc:
        lost = getattr(context, "lost", ())
        if lost:
            raise ValueError(
                f"the formula uses {', '.join(repr(n) for n in lost)} from the scope it was fitted in, which could "
                "not be pickled with the result (a lambda or a local function); define it at module level and refit "
                f"to predict from an unpickled result ({exc})"
            ) from exc
        raise


def add_offsets(offset: np.ndarray | None, fixed: FixedDesign) -> np.ndarray | None:
    """The ``offset=`` argument's values (on the kept rows) plus the formula's ``offset(...)`` terms."""
    if fixed.offset is None:
        return offset
    return fixed.offset if offset is None else offset + fixed.offset


def missing_formula_variables(formula: str, data: pd.DataFrame, context: Any = None) -> list[str]:
    """Variables a formula needs that are neither data columns, names of ``context`` nor known helpers.

    ``offset(...)`` terms are read as the expressions they hold.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0], "x": [2.0]})
    >>> missing_formula_variables("y ~ I(x * k) + z", df, {"k": 2})
    ['z']
    """
    require_formula_string(formula)
    # A random term's expression comes as "~ expr" (no response, no offsets: refused there).
    base, offsets = split_offsets(formula) if formula.split("~", 1)[0].strip() else (formula, [])
    counts = cbind_response(base) if formula.split("~", 1)[0].strip() else None
    if counts is not None:  # formulaic would read cbind as a variable: the arguments are what is needed
        base, offsets = f"~ {formula_sides(base)[1]}", [*counts, *offsets]
    try:
        needed = set(formulaic.Formula(base).required_variables)
        for expr in offsets:
            needed |= set(formulaic.Formula(f"~ I({expr})").required_variables)
    except Exception as exc:  # formulaic's parse errors come in several types
        raise ValueError(f"cannot parse formula {formula!r}: {exc}") from exc
    needed = {v for v in needed if context is None or str(v) not in context}
    # formulaic reads a quoted name with a dot (`Informed.liking`) as an attribute of `Informed` in
    # required_variables, though it evaluates the quoted column: such a prefix is not missing.
    quoted_roots = {q.split(".")[0] for q in re.findall(r"`([^`]+)`", formula) if q in data.columns}
    return sorted(str(v) for v in needed if str(v) not in data.columns and str(v) not in _CONTEXT_NAMES
                  and str(v) not in quoted_roots)


def model_frame(formula: str, data: Any, arguments: dict[str, Any], context: Any = None,
                lists: Iterable[str] = ("groups=",)) -> tuple[pd.DataFrame, list[str], FormulaContext]:
    """The columns a model without random terms uses, as pandas: the formula's and those ``arguments`` name.

    Names are checked on all of the data's columns first (a misspelt one gets its "did you mean"); then
    only the used columns of a polars, pyarrow or duckdb table are converted (see
    :func:`multilevel.frames.as_pandas`). ``arguments`` maps an error label (``"groups="``) to a
    column name, a list of names (for the labels in ``lists``) or anything else (an array: no column).

    Returns the data, the formula's columns (in order of appearance) and the formula's context
    (the names of ``context``, the caller's scope, that it mentions).

    Examples
    --------
    >>> import polars as pl
    >>> df, used, ctx = model_frame("y ~ I(x * k)", pl.DataFrame({"y": [1.0], "x": [2.0], "id": [1], "z": [0]}),
    ...                             {"groups=": "id"}, {"k": 2})
    >>> df.columns.tolist(), used, dict(ctx)
    (['y', 'x', 'id'], ['y', 'x'], {'k': 2})
    """
    header = frame_header(data)
    context = formula_context(context, formula, columns=header.columns)
    named = named_columns(header, arguments, lists)
    missing = missing_formula_variables(formula, header, context)
    if missing:
        require_columns(missing, header, f"the formula {formula!r}")
    used = columns_in(formula, header)
    return as_pandas(data, used + [c for c in named if c not in used]), used, context


def fixed_design(formula: str, data: pd.DataFrame, context: Any = None, *, counts: bool = False) -> FixedDesign:
    """Build y, X and the ``offset(...)`` terms for ``formula`` (no random terms) on ``data`` without missing values.

    Parameters
    ----------
    formula : str
        ``"y ~ x + offset(log(t))"``; each ``offset(expr)`` term is evaluated on the data and the terms
        are summed into ``offset`` (R's and lme4's ``offset()``).
    data : pandas DataFrame
    context : mapping or CallerScope, optional
        Names the formula takes from the caller's scope (:func:`multilevel.formula.caller_context`);
        only those the formula mentions are kept (in ``context``), for prediction.
    counts : bool, default False
        Accept a ``cbind(successes, failures)`` response (binomial glmm and gee); see
        :func:`binomial_counts`. ``y`` is then the proportion and ``trials`` the trials.

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0], "x": [0.0, 1.0, 2.0]})
    >>> d = fixed_design("y ~ x", df)
    >>> d.names, d.X.shape
    (['Intercept', 'x'], (3, 2))
    >>> d = fixed_design("y ~ I(x * k) + offset(x)", df, {"k": 10.0})
    >>> d.X[:, 1], d.offset
    (array([ 0., 10., 20.]), array([0., 1., 2.]))
    """
    lhs = formula_sides(formula)[0]
    refuse_bars(formula)  # lmm passes its fixed part; gls and gee take no bars
    if not counts:
        refuse_cbind(formula)
    base, offset_exprs = split_offsets(formula)
    context = formula_context(context, formula, columns=data.columns)
    trials = None
    if cbind_response(base) is not None:
        successes, trials = binomial_counts(base, data, context, warn_fractional=())  # warned by the design
        # R's binomial()$initialize: the proportion, 0 where there are no trials (weight 0 there)
        y_counts = np.divide(successes, trials, out=np.zeros_like(successes), where=trials > 0)
        base = f"~ {formula_sides(base)[1]}"  # formulaic builds the right side alone
    if lhs in data.columns and not pd.api.types.is_numeric_dtype(data[lhs]):
        raise ValueError(
            f"the response {lhs!r} has dtype {data[lhs].dtype}; a linear model needs a numeric response"
        )
    try:
        # numpy output: one (n, p) array, no per-column frame to copy from again.
        mm = formulaic.model_matrix(base, data, na_action="raise", output="numpy", context=context)
    except Exception as exc:
        raise ValueError(f"could not build the fixed-effects model matrix of {formula!r}: {exc}") from exc
    if trials is not None:  # the counts are the response: formulaic built the right side only
        if not hasattr(mm, "model_spec"):
            raise ValueError(f"formula {formula!r} must be 'cbind(successes, failures) ~ predictors' with one "
                             "right-hand side")
        rhs = mm
        y = y_counts
    else:
        if not hasattr(getattr(mm, "lhs", None), "shape") or not hasattr(mm.rhs, "model_spec"):  # "~ x", or several right-hand sides
            raise ValueError(f"formula {formula!r} must be 'response ~ predictors' with one right-hand side")
        if mm.lhs.shape[1] != 1:
            raise ValueError(
                f"the response {lhs!r} must be one numeric column; it expands to {mm.lhs.shape[1]} columns"
            )
        y = np.ascontiguousarray(np.asarray(mm.lhs, dtype=float)[:, 0])
        rhs = mm.rhs
    check_finite(y, f"response {lhs!r}")
    check_scale(y, f"response {lhs!r}")
    X = np.asarray(rhs, dtype=float)  # any memory order: the core reads strided arrays
    names = [str(c) for c in rhs.model_spec.column_names]
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
    spec = rhs.model_spec
    del mm, rhs
    offset_terms, offset = formula_offsets(offset_exprs, data, context)
    return FixedDesign(y, X, names, lhs, spec, kept, dropped, numeric_means(spec, data), context, offset, offset_terms,
                       trials)


def expression_column(expr: str, data: pd.DataFrame, context: Any, label: str, unit: str) -> tuple[np.ndarray, Any]:
    """One finite number per row from ``expr`` (as formulaic's ``I(expr)``), and its model spec for new data.

    Missing inputs were dropped with the other used columns, so a NaN comes from the expression
    (log of a negative) and ``check_finite`` names its row. ``label`` names the expression in errors
    ("offset(log(t))"), ``unit`` what each row must hold ("number", "count").

    Examples
    --------
    >>> expression_column("log(t)", pd.DataFrame({"t": [1.0, np.e]}), None, "offset(log(t))", "number")[0]
    array([0., 1.])
    """
    try:
        mm = formulaic.model_matrix(f"0 + I({expr})", data, na_action="ignore", output="numpy",
                                    context=context, ensure_full_rank=False)
    except Exception as exc:
        raise ValueError(f"could not evaluate {label}: {exc}") from exc
    values = np.asarray(mm, dtype=float)
    if values.shape[1] != 1:
        raise ValueError(f"{label} must be one {unit} per row; it expands to {values.shape[1]} columns "
                         "(is it a categorical column?)")
    values = np.ascontiguousarray(values[:, 0])
    check_finite(values, label)
    return values, mm.model_spec


def binomial_counts(formula: str, data: pd.DataFrame, context: Any = None, *,
                    warn_fractional: tuple[str, ...] = ("successes", "failures")) -> tuple[np.ndarray, np.ndarray]:
    """Successes and trials of a ``cbind(successes, failures) ~ ...`` formula on ``data``.

    Each argument of ``cbind`` is evaluated as ``I(expr)``, like an ``offset(...)`` term: columns,
    formulaic's functions and the caller's names (``context``). Negative or non-finite counts are a
    ValueError; non-integer ones a warning (R's "non-integer counts in a binomial glm") for the roles
    in ``warn_fractional`` (glmm checks the successes itself, as response x weights, like the
    ``weights=`` form's).

    Examples
    --------
    >>> df = pd.DataFrame({"s": [1, 0, 3], "n": [4, 2, 3]})
    >>> binomial_counts("cbind(s, n - s) ~ 1", df)
    (array([1., 0., 3.]), array([4., 2., 3.]))
    """
    exprs = cbind_response(formula)
    if exprs is None:
        raise ValueError(f"formula {formula!r} has no cbind(successes, failures) response")
    lhs = formula_sides(formula)[0]
    context = formula_context(context, formula, columns=data.columns)
    values = []
    for expr, role in zip(exprs, ("successes", "failures")):
        column, _ = expression_column(expr, data, context, f"the {role} {expr!r} of {lhs}", "count")
        bad = np.flatnonzero(column < 0)
        if bad.size:
            raise ValueError(f"the {role} {expr!r} of {lhs} has {bad.size} negative count(s) (first at row "
                             f"{int(bad[0])}: {float(column[bad[0]])!r}); binomial counts are >= 0")
        fractional = np.flatnonzero(column != np.rint(column))
        if fractional.size and role in warn_fractional:
            warnings.warn(f"the {role} {expr!r} of {lhs} has {fractional.size} non-integer count(s) (first at row "
                          f"{int(fractional[0])}: {float(column[fractional[0]])!r}); a binomial model needs counts",
                          UserWarning, stacklevel=4)
        values.append(column)
    return values[0], values[0] + values[1]


def drop_empty_trials(formula: str, data: pd.DataFrame, context: Any = None, *,
                      warn_fractional: tuple[str, ...] = ("successes", "failures")
                      ) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Drop the rows of a ``cbind(successes, failures)`` response with no trials, with a warning counting them.

    Negative counts are refused and non-integer ones warned about here (see :func:`binomial_counts`),
    once per design.

    Such a row carries no information: glmer keeps it with prior weight 0 (the same estimates and
    log-likelihood, but counted in ``nobs``), geeglm fails on it. Returns the kept data, a boolean
    mask over the rows and the number dropped (0, and the data unchanged, without ``cbind``).

    Examples
    --------
    >>> df = pd.DataFrame({"s": [1, 0, 3], "f": [3, 0, 0]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     kept, mask, n = drop_empty_trials("cbind(s, f) ~ 1", df)
    >>> mask, n, str(caught[0].message)[:34]
    (array([ True, False,  True]), 1, 'dropped 1 of 3 rows with no trials')
    """
    if cbind_response(formula) is None:
        return data, np.ones(len(data), dtype=bool), 0
    _, trials = binomial_counts(formula, data, context, warn_fractional=warn_fractional)
    empty = trials == 0
    n_empty = int(empty.sum())
    if n_empty == len(data):
        raise ValueError(f"every row of {formula_sides(formula)[0]} has no trials (successes + failures = 0); "
                         "nothing is left to fit")
    if n_empty:
        warnings.warn(f"dropped {n_empty} of {len(data)} rows with no trials ({formula_sides(formula)[0]} sums to 0): "
                      "they carry no information (glmer keeps them with weight 0, which gives the same fit)",
                      UserWarning, stacklevel=4)
        return data.loc[~empty], ~empty, n_empty
    return data, ~empty, 0


def trial_weights(weights: np.ndarray | None, fixed: FixedDesign) -> np.ndarray | None:
    """Prior weights: ``weights=`` (on the kept rows) times the trials of a ``cbind`` response, as R multiplies them."""
    if fixed.trials is None:
        return weights
    return fixed.trials if weights is None else weights * fixed.trials


def formula_offsets(exprs: list[str], data: pd.DataFrame, context: FormulaContext | None
                    ) -> tuple[list[tuple[str, Any]], np.ndarray | None]:
    """Each ``offset(expr)`` term's model spec, and their sum on ``data`` (None without terms).

    Evaluated by formulaic as ``I(expr)``, so an offset reads columns, formulaic's functions
    (``log``, ``np.log``, ``center``) and the caller's names exactly as the fixed part does.
    """
    terms: list[tuple[str, Any]] = []
    total = None
    for expr in exprs:
        values, spec = expression_column(expr, data, context, f"offset({expr})", "number")
        check_scale(values, f"offset({expr})")
        terms.append((expr, spec))
        total = values if total is None else total + values
    return terms, total


def numeric_means(spec: Any, data: pd.DataFrame) -> dict[str, float]:
    """Means of the numeric (not boolean) data columns a model spec reads, for reference grids."""
    out = {}
    for name in sorted(str(v) for v in spec.required_variables):
        if name in data.columns and pd.api.types.is_numeric_dtype(data[name]) \
                and not pd.api.types.is_bool_dtype(data[name]):
            out[name] = float(data[name].mean())
    return out


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
