"""Linear-mixed-model design: plain arrays for the C++ core.

`RandomTerm` and `LmmDesign` are the array-level interface: a front end
without formulas or pandas builds them directly and calls
:func:`multilevel.fit_lmm`. :func:`lmm_design` builds them from a formula.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from multilevel.fixed_effects import (
    FixedDesign,
    add_offsets,
    drop_empty_trials,
    evaluate_spec,
    fixed_design,
    missing_formula_variables,
    trial_weights,
)
from multilevel.formula import RandomTermSpec, formula_context, refuse_cbind, refuse_offset, split_formula
from multilevel.frames import (
    as_pandas,
    check_finite,
    columns_in,
    drop_missing,
    frame_header,
    named_columns,
    require_columns,
    vector_argument,
)
from multilevel.grouping import GroupingLevels, make_grouping


class TermDescription:
    """What a random-effects term is, apart from its rows: names, levels and how to rebuild it on new data.

    Shared by :class:`RandomTerm` (with the rows) and :class:`TermStructure`
    (without, as a fit from chunked data keeps it).
    """

    group: str
    columns: list[str]
    levels: Any
    z_spec: Any
    factors: tuple[str, ...] | None
    keys: pd.Index | None  # the key values behind `levels` (formula fits), matched by value in codes_for
    context: Any  # the names the formula takes from the caller's scope (formula fits)

    @property
    def label(self) -> str:
        cols = " + ".join(str(c) for c in self.columns) if self.columns else "?"
        return f"({cols} | {self.group})"

    @property
    def nlevels(self) -> int:
        return len(self.levels)

    @property
    def p(self) -> int:
        return len(self.columns)

    @property
    def ntheta(self) -> int:
        return self.p * (self.p + 1) // 2

    def z_for(self, newdata: pd.DataFrame) -> np.ndarray:
        """The term's columns evaluated on new data (formula fits only)."""
        return np.asarray(evaluate_spec(self.z_spec, newdata, getattr(self, "context", None)), dtype=float)

    @property
    def grouping(self) -> GroupingLevels | None:
        """The term's grouping factor as the grouping object every model shares (its levels and the keys
        behind them); None for an array-level term, which knows its levels by label only."""
        if self.keys is None or not self.factors:
            return None
        return GroupingLevels(self.group, pd.Index(self.levels), tuple(self.factors), self.keys)

    def codes_for(self, newdata: pd.DataFrame) -> np.ndarray:
        """Codes of new data's levels; -1 for a level not seen in the fit."""
        grouping = self.grouping
        if grouping is not None:
            return grouping.codes_of(newdata)
        keys = newdata[self.factors[0]].astype(str) if self.factors else None
        for f in (self.factors or ())[1:]:
            keys = keys + ":" + newdata[f].astype(str)
        labels = pd.Index(self.levels.astype(str))
        return labels.get_indexer(keys)


@dataclass(frozen=True)
class TermStructure(TermDescription):
    """A random-effects term without its rows (see :class:`TermDescription`).

    Examples
    --------
    >>> t = TermStructure("g", ["Intercept", "x"], pd.Index(["a", "b", "c"]))
    >>> t.label, t.nlevels, t.ntheta
    ('(Intercept + x | g)', 3, 3)
    """

    group: str
    columns: list[str]
    levels: pd.Index
    expr: str | None = None
    z_spec: Any = None
    factors: tuple[str, ...] | None = None
    keys: pd.Index | None = None
    context: Any = None


@dataclass
class RandomTerm(TermDescription):
    """One random-effects term ``(z | group)`` as arrays.

    Parameters
    ----------
    codes : (n,) integer array
        Level of each row, in ``0 .. nlevels - 1``.
    z : (n, p) float array
        The term's model-matrix columns (a column of ones for a random intercept).
    group : str
        Name of the grouping factor.
    columns : list of str
        Names of the ``p`` columns of ``z``.
    levels : sequence, optional
        Label of each level; default ``0 .. max(codes)``.

    Examples
    --------
    >>> import numpy as np
    >>> t = RandomTerm(np.array([0, 0, 1, 1]), np.ones((4, 1)), "g", ["Intercept"])
    >>> t.nlevels, t.p
    (2, 1)
    """

    codes: np.ndarray
    z: np.ndarray
    group: str
    columns: list[str]
    levels: Sequence[Any] | None = None
    # Set for formula fits: how to rebuild z and codes on new data.
    expr: str | None = None
    z_spec: Any = None
    factors: tuple[str, ...] | None = None
    keys: pd.Index | None = None
    context: Any = None

    def __post_init__(self) -> None:
        codes = np.asarray(self.codes)
        if codes.ndim != 1 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"codes of term {self.label} must be a 1-D integer array")
        z = np.asarray(self.z, dtype=float)
        if z.ndim == 1:
            z = z[:, None]
        if z.shape[0] != codes.shape[0]:
            raise ValueError(f"term {self.label}: z has {z.shape[0]} rows but codes has {codes.shape[0]}")
        if len(self.columns) != z.shape[1]:
            raise ValueError(f"term {self.label}: {len(self.columns)} column names for {z.shape[1]} columns")
        if codes.size and codes.min() < 0:
            raise ValueError(f"term {self.label}: codes must be >= 0")
        nlev = int(codes.max()) + 1 if codes.size else 0
        if self.levels is None:
            self.levels = pd.RangeIndex(nlev)
        elif nlev > len(self.levels):
            raise ValueError(f"term {self.label}: a code is >= the number of levels ({len(self.levels)})")
        self.levels = pd.Index(self.levels)
        self.codes = codes.astype(np.int32, copy=False)
        self.z = z  # any memory order: the core reads strided arrays
        for j, name in enumerate(self.columns):
            check_finite(self.z[:, j], f"random-effects column {name!r} of term {self.label}")

    def structure(self) -> TermStructure:
        """The term without its rows."""
        return TermStructure(self.group, list(self.columns), self.levels, self.expr, self.z_spec, self.factors,
                             self.keys, self.context)


#: Whether the designs built now are for a model that estimates a residual variance (see check_term_sizes).
_RESIDUAL_VARIANCE: ContextVar[bool] = ContextVar("multilevel_residual_variance", default=True)


@contextmanager
def without_residual_variance() -> Iterator[None]:
    """Build designs for a model without a residual variance (a GLMM): inside this block
    :func:`check_term_sizes` allows as many random effects per term as rows, e.g. an
    observation-level ``(1 | obs)`` for overdispersion (lme4's ``glFormula``: ``allow.n = TRUE``).

    :func:`multilevel.glmm` builds its design in such a block; build an array-level design for
    :func:`multilevel.glmm.fit_glmm_design` in one too if it has an observation-level term.

    Examples
    --------
    >>> import numpy as np
    >>> obs = RandomTerm(np.arange(4), np.ones((4, 1)), "obs", ["Intercept"])
    >>> with without_residual_variance():
    ...     check_term_sizes([obs], 4)
    """
    token = _RESIDUAL_VARIANCE.set(False)
    try:
        yield
    finally:
        _RESIDUAL_VARIANCE.reset(token)


def check_term_sizes(terms: Sequence[TermDescription], nobs: int, *, residual: bool | None = None) -> None:
    """Refuse random-effects terms that cannot be estimated from ``nobs`` rows (naming the term).

    Parameters
    ----------
    terms : the random-effects terms
    nobs : int
        Number of rows.
    residual : bool, optional
        Whether the model estimates a residual variance (a linear mixed model). Then a term needs
        fewer random effects than rows (lme4's ``lmer``: ``check.nobs.vs.nRE``), since a term with one
        effect per row is confounded with the residual. Without one (a GLMM) a term may have as many
        as rows (``glmer``'s ``allow.n = TRUE``), e.g. an observation-level ``(1 | obs)``; more are
        still refused. Default: True, unless inside :func:`without_residual_variance`.

    Examples
    --------
    >>> import numpy as np
    >>> obs = RandomTerm(np.arange(4), np.ones((4, 1)), "obs", ["Intercept"])
    >>> check_term_sizes([obs], 4, residual=False)
    >>> check_term_sizes([obs], 4)
    Traceback (most recent call last):
    ...
    ValueError: term (Intercept | obs) has 4 random effects and there are 4 observations; with the residual ...
    """
    if residual is None:
        residual = _RESIDUAL_VARIANCE.get()
    if not terms:
        raise ValueError("a mixed model needs at least one random-effects term, e.g. (1 | group)")
    for t in terms:
        if t.nlevels < 2:
            raise ValueError(
                f"grouping factor {t.group!r} of term {t.label} has {t.nlevels} level; "
                "it needs at least 2 to estimate a variance"
            )
        n_effects = t.nlevels * t.p
        if residual and n_effects >= nobs:
            raise ValueError(
                f"term {t.label} has {n_effects} random effects and there are {nobs} observations; with the "
                "residual variance they are not identifiable. Simplify the term or drop it"
            )
        if n_effects > nobs:
            raise ValueError(
                f"term {t.label} has {n_effects} random effects but there are only {nobs} "
                "observations; the variance is not identifiable. Simplify the term or drop it"
            )


@dataclass
class LmmDesign:
    """Everything the core needs, plus what results need to label and predict.

    Terms are sorted by decreasing number of levels (lme4's order, which is
    also the order of ``theta``).
    """

    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    terms: list[RandomTerm]
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    row_index: pd.Index | None = None
    n_dropped: int = 0
    fixed: FixedDesign | None = None
    formula: str | None = None
    response: str = "y"
    data_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    #: The design holds the rows (a fit from chunked data keeps a :class:`RowlessLmmDesign`).
    has_rows = True

    def __post_init__(self) -> None:
        self.y = np.ascontiguousarray(self.y, dtype=float)
        n = self.y.shape[0]
        X = np.asarray(self.X, dtype=float)
        if X.ndim == 1:
            X = X[:, None]
        if X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} rows but y has {n}")
        self.X = X  # any memory order: the core reads strided arrays
        if len(self.fixed_names) != X.shape[1]:
            raise ValueError(f"{len(self.fixed_names)} fixed-effect names for {X.shape[1]} columns")
        check_finite(self.y, f"response {self.response!r}")
        for label, vec in (("weights", self.weights), ("offset", self.offset)):
            if vec is not None:
                vec = np.ascontiguousarray(vec, dtype=float)
                if vec.shape != (n,):
                    raise ValueError(f"{label} must have one value per row ({n}), not shape {vec.shape}")
                check_finite(vec, label)
                setattr(self, label, vec)
        if self.weights is not None and (self.weights <= 0).any():
            bad = np.nonzero(self.weights <= 0)[0]
            raise ValueError(
                f"weights must be positive; {bad.size} are not (first at row {int(bad[0])}); drop those rows"
            )
        for t in self.terms:
            if t.codes.shape[0] != n:
                raise ValueError(f"term {t.label} has {t.codes.shape[0]} rows but y has {n}")
        check_term_sizes(self.terms, n)
        self.terms = sorted(self.terms, key=lambda t: -t.nlevels)

    @property
    def nobs(self) -> int:
        return self.y.shape[0]

    @property
    def ntheta(self) -> int:
        return sum(t.ntheta for t in self.terms)

    def response_minus_offset(self) -> np.ndarray:
        return self.y if self.offset is None else self.y - self.offset


@dataclass
class RowlessLmmDesign:
    """What a result needs of a design whose rows were read in chunks and not kept.

    Labels, levels and the model specs (so ``predict(newdata)`` works) and
    the number of rows; no per-row array.
    """

    fixed_names: list[str]
    terms: list[TermStructure]
    nobs: int
    fixed: FixedDesign | None = None
    formula: str | None = None
    response: str = "y"
    n_dropped: int = 0
    source: str = "chunks"
    extra: dict[str, Any] = field(default_factory=dict)

    has_rows = False
    y = X = weights = offset = row_index = None

    @property
    def ntheta(self) -> int:
        return sum(t.ntheta for t in self.terms)


def term_columns(spec: RandomTermSpec, data: pd.DataFrame, context: Any = None) -> tuple[np.ndarray, list[str], Any]:
    """A random term's model matrix (n, p_k) on ``data``, its column names and its formulaic spec.

    ``context``: the names the formula takes from the caller's scope (see :func:`lmm_design`).
    """
    try:
        mm = formulaic.model_matrix(spec.expr, data, na_action="raise", output="numpy",
                                    context=formula_context(context, spec.expr, columns=data.columns))
    except Exception as exc:
        raise ValueError(f"could not build the columns of random term {spec}: {exc}") from exc
    return np.asarray(mm, dtype=float), [str(c) for c in mm.model_spec.column_names], mm.model_spec


def mixed_model_columns(formula: str, data: pd.DataFrame, context: Any = None
                        ) -> tuple[str, list[RandomTermSpec], list[str], list[str]]:
    """Split an lme4 formula and find the columns it uses in ``data`` (only its column names are read).

    Returns the fixed part (with its ``offset(...)`` terms), the random
    terms, every used column (formula variables, then grouping factors, in
    order of appearance) and the columns inside the formulas' expressions.
    A variable that is neither a column nor a name of ``context`` (the
    caller's scope) is a ValueError naming it.
    """
    fixed_formula, specs = split_formula(formula)
    if not specs:
        raise ValueError(
            f"formula {formula!r} has no random-effects term such as (1 | group); "
            "for a model without random effects use ordinary least squares"
        )
    missing = missing_formula_variables(fixed_formula, data, context)
    if missing:
        require_columns(missing, data, f"the fixed part {fixed_formula!r}")
    expressions = columns_in(fixed_formula, data)
    used = list(expressions)
    for spec in specs:
        require_columns(spec.factors, data, f"random term {spec}")
        refuse_offset(spec.expr, f"the random term {spec}")
        missing = (missing_formula_variables(f"~ {spec.expr}", data, context) if spec.expr.strip() not in ("1", "0")
                   else [])
        if missing:
            require_columns(missing, data, f"random term {spec}")
        in_term = columns_in(spec.expr, data)
        expressions += [c for c in in_term if c not in expressions]
        used += [c for c in in_term + list(spec.factors) if c not in used]
    return fixed_formula, specs, used, expressions


def lmm_design(
    formula: str,
    data: Any,
    *,
    weights: Any = None,
    offset: Any = None,
    context: Any = None,
    counts: bool = False,
) -> LmmDesign:
    """Build an :class:`LmmDesign` from an lme4-style formula and a data frame.

    Rows with a missing value in any used column (or in weights/offset) are
    dropped with a warning that counts them.

    Parameters
    ----------
    formula : str
        ``"y ~ x + offset(log(t)) + (1 | g)"``: lme4's syntax; ``offset(...)`` terms are added to
        ``offset``.
    data : pandas, polars (eager or lazy), pyarrow or duckdb table, or a dict of columns
        Only the columns the model uses are converted to pandas.
    weights, offset : column name or array, optional
    context : mapping or :class:`~multilevel.formula.CallerScope`, optional
        Names the formula may take from outside the data (``k`` in ``I(x * k)``, a module, a
        function); :func:`multilevel.lmm` passes its caller's scope. Only the names the formula
        mentions are kept, for prediction.
    counts : bool, default False
        Accept a ``cbind(successes, failures)`` response (:func:`multilevel.glmm` with the binomial
        family): ``y`` is the proportion and the weights are the trials times ``weights``; rows
        with no trials are dropped with a warning (see :func:`multilevel.fixed_effects.drop_empty_trials`).

    Examples
    --------
    >>> df = pd.DataFrame({"y": [1.0, 2.0, 3.0, 5.0, 4.0, 6.0], "g": list("aabbcc")})
    >>> d = lmm_design("y ~ 1 + (1 | g)", df)
    >>> d.fixed_names, d.terms[0].group, d.terms[0].nlevels
    (['Intercept'], 'g', 3)
    """
    if not counts:
        refuse_cbind(formula, "a linear mixed model")
    header = frame_header(data)
    context = formula_context(context, formula, columns=header.columns)
    fixed_formula, specs, used, _ = mixed_model_columns(formula, header, context)
    named = named_columns(header, {"weights=": weights, "offset=": offset})
    df = as_pandas(data, used + named)  # of a wide polars / arrow / duckdb table, only the used columns
    w, w_col = vector_argument(weights, df, "weights")
    off, off_col = vector_argument(offset, df, "offset")
    used += [c for c in (w_col, off_col) if c and c not in used]
    df, keep, n_dropped = drop_missing(df, used, {"weights": w, "offset": off})
    if n_dropped:
        w = None if w is None else w[keep]
        off = None if off is None else off[keep]
    # glmm checks the successes itself (response x weights), as for the weights= form
    df, nonempty, n_empty = drop_empty_trials(fixed_formula, df, context, warn_fractional=("failures",))
    if n_empty:
        w = None if w is None else w[nonempty]
        off = None if off is None else off[nonempty]
        n_dropped += n_empty

    fixed = fixed_design(fixed_formula, df, context, counts=counts)
    off = add_offsets(off, fixed)
    w = trial_weights(w, fixed)
    terms = []
    for spec in specs:
        grouping = make_grouping(df, spec.factors)
        z, cols, z_spec = term_columns(spec, df, context)
        terms.append(
            RandomTerm(grouping.codes, z, grouping.name, cols, grouping.levels,
                       expr=spec.expr, z_spec=z_spec, factors=spec.factors, keys=grouping.keys, context=context)
        )
    # predict(newdata) reads an offset column from the new rows; an offset array it cannot extend
    extra = {"offset_column": offset} if isinstance(offset, str) else {"offset_argument": offset is not None}
    return LmmDesign(
        y=fixed.y, X=fixed.X, fixed_names=fixed.names, terms=terms, weights=w, offset=off,
        row_index=df.index, n_dropped=n_dropped, fixed=fixed, formula=formula, response=fixed.response,
        extra=extra,
    )
