"""Hypothesis matrices of the F tests per model term (types 1 and 3), as lmerTest builds them.

* Type 1 (sequential): the rows of ``t(L)`` for each term's columns, where
  ``L`` is the unit lower factor of the Doolittle decomposition of ``X'X``.
* Type 3 (marginal, SAS's definition): each effect of the fully dummy-coded
  model (every level of every factor) is written in the columns of ``X``;
  each term's columns are made orthogonal to those of the terms containing
  it; the rows that correspond to the columns of ``X`` form the hypotheses.
  lmerTest writes the dummy columns in ``X`` by least squares over the data.
  For a model whose terms are hierarchical that map does not depend on the
  data, so here it is computed on a generated grid of the formula's
  variables (no rows needed: chunked and Dask fits are tested the same way).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.errors import require_rows

MAX_GRID_ROWS = 200_000


@dataclass(frozen=True)
class ModelTerm:
    """One term of the fixed part: its name, its factors and its columns in X."""

    name: str
    factors: tuple[str, ...]
    numeric: frozenset[str]
    columns: tuple[int, ...]
    evaluators: tuple[str, ...]  # formulaic expressions that evaluate each factor


def zapsmall(x: np.ndarray, digits: int = 7) -> np.ndarray:
    """R's ``zapsmall``: round to ``digits`` significant digits of the largest magnitude."""
    mx = np.max(np.abs(x)) if x.size else 0.0
    if mx <= 0:
        return x
    return np.round(x, max(0, digits - int(np.ceil(np.log10(mx)))))


def _kind(spec: Any, expr: str) -> str:
    state = spec.encoder_state.get(expr)
    return "categorical" if state is not None and str(state[0].value) == "categorical" else "numerical"


def model_terms(fixed: Any) -> tuple[list[ModelTerm], bool]:
    """The non-intercept terms of a formula fit with their kept columns, and whether it has an intercept."""
    spec = fixed.spec
    position = {int(full): j for j, full in enumerate(fixed.kept)}
    terms, intercept = [], False
    for term, idx in spec.term_indices.items():
        factors = tuple(str(f) for f in term.factors)
        cols = tuple(position[i] for i in idx if i in position)
        if all(f == "1" for f in factors):
            intercept = bool(cols)
            continue
        numeric = frozenset(f for f in factors if _kind(spec, f) == "numerical")
        evaluators = tuple(f"`{f}`" if fac.eval_method.value == "lookup" and not f.isidentifier() else f
                           for f, fac in zip(factors, term.factors))
        terms.append(ModelTerm(str(term), factors, numeric, cols, evaluators))
    return terms, intercept


def _require_formula(design: Any) -> Any:
    if design.fixed is None or design.fixed.spec is None:
        raise ValueError("F tests per term need a formula fit; for an array-level fit pass a contrast matrix to ftest(L)")
    return design.fixed


# ----- type 1 --------------------------------------------------------------
def doolittle_lower(a: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Unit lower factor L of ``a = L U`` without pivoting, zeroing pivots and entries below ``eps`` (lmerTest's)."""
    n = a.shape[0]
    lower, upper = np.eye(n), np.zeros((n, n))
    for i in range(n):
        upper[i] = a[i] - lower[i, :i] @ upper[:i]
        if i + 1 < n:
            col = a[i + 1:, i] - lower[i + 1:, :i] @ upper[:i, i]
            lower[i + 1:, i] = 0.0 if abs(upper[i, i]) < eps else col / upper[i, i]
    lower[np.abs(lower) < eps] = 0.0
    return lower


def type1_contrasts(design: Any) -> dict[str, np.ndarray]:
    """Sequential (type 1) hypotheses per term, from ``X'X`` (lmerTest's ``get_contrasts_type1``)."""
    fixed = _require_formula(design)
    require_rows(design, "type 1 F tests", "use type=3, which needs no rows")
    X = np.asarray(design.X, dtype=float)
    lt = doolittle_lower(X.T @ X).T if X.shape[1] > 1 else np.ones((1, 1))
    terms, _ = model_terms(fixed)
    return {t.name: lt[list(t.columns)] for t in terms if t.columns}


# ----- type 3 --------------------------------------------------------------
def formula_variables(fixed: Any, terms: list[ModelTerm] | None = None,
                      treatment_only: bool = False) -> tuple[dict[str, list[Any]], set[str]]:
    """Levels of every variable behind a categorical factor, and the variables behind numeric ones.

    ``treatment_only``: refuse a factor coded by other contrasts (type 3 tests match dummy columns).
    """
    import formulaic

    spec = fixed.spec
    levels: dict[str, list[Any]] = {}
    numeric: set[str] = set()
    for t in model_terms(fixed)[0] if terms is None else terms:
        for f, ev in zip(t.factors, t.evaluators):
            needed = sorted(str(v) for v in formulaic.Formula("0 + " + ev).required_variables)
            if f in t.numeric:
                numeric.update(needed)
                continue
            state = spec.encoder_state[f][1]
            contrasts = state.get("contrasts")
            name = type(getattr(contrasts, "contrasts", None)).__name__
            if treatment_only and name not in ("TreatmentContrasts", "NoneType"):
                raise ValueError(f"type 3 tests are defined here for treatment contrasts (formulaic's default); "
                                 f"{f!r} uses {name}: refit with the default coding, or pass the hypotheses to ftest(L)")
            if len(needed) != 1:
                raise ValueError(f"{f!r} is a categorical factor of several variables ({needed}); reference grids "
                                 "need each categorical factor to come from one variable")
            levels[needed[0]] = list(state["categories"])
    return levels, numeric - set(levels)


def _grid(levels: dict[str, list[Any]], numeric: set[str], min_rows: int, seed: int = 20261201) -> pd.DataFrame:
    """All combinations of the categorical variables' levels (repeated), numeric variables random in [1, 2]."""
    rng = np.random.default_rng(seed)
    combos = pd.MultiIndex.from_product(list(levels.values()), names=list(levels)).to_frame(index=False) \
        if levels else pd.DataFrame(index=range(1))
    if len(combos) > MAX_GRID_ROWS:
        raise ValueError(f"type 3 tests need a grid of all {len(combos)} level combinations of "
                         f"{list(levels)}; that is more than {MAX_GRID_ROWS}: pass the hypotheses to ftest(L)")
    reps = max(2 + len(numeric), int(np.ceil(min_rows / len(combos))))
    grid = pd.concat([combos] * reps, ignore_index=True)
    for v in sorted(numeric):
        grid[v] = rng.uniform(1.0, 2.0, len(grid))
    return grid


def _full_coding(term: ModelTerm, grid: pd.DataFrame) -> np.ndarray:
    """The term's columns with every level of every categorical factor (R's ``model.matrix(~ 0 + term)``)."""
    import formulaic

    out = np.ones((len(grid), 1))
    for ev in term.evaluators:
        block = np.asarray(formulaic.model_matrix("0 + " + ev, grid, output="numpy"), dtype=float)
        out = (out[:, :, None] * block[:, None, :]).reshape(len(grid), -1)
    return out


def _contains(inner: ModelTerm, outer: ModelTerm) -> bool:
    """lmerTest's containment: outer has all of inner's factors and more, and the same numeric ones."""
    a, b = set(inner.factors), set(outer.factors)
    return a <= b and bool(b - a) and inner.numeric == outer.numeric


def _residuals(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return y - x @ coef


def type3_contrasts(design: Any) -> dict[str, np.ndarray]:
    """Marginal (type 3) hypotheses per term (lmerTest's ``extract_contrasts_type3``)."""
    fixed = _require_formula(design)
    terms, intercept = model_terms(fixed)
    terms = [t for t in terms if t.columns]
    p = len(design.fixed_names)
    if p <= 1 or len(terms) <= 1:
        return type1_contrasts(design) if design.has_rows else {t.name: np.eye(p)[list(t.columns)] for t in terms}
    levels, numeric = formula_variables(fixed, terms, treatment_only=True)
    grid = _grid(levels, numeric, min_rows=4 * p)
    x = fixed.model_matrix(grid)
    full = [np.ones((len(grid), 1))] if intercept else []
    full += [_full_coding(t, grid) for t in terms]
    rdx = np.hstack(full)
    if np.linalg.matrix_rank(x) < p:
        raise ValueError("type 3 tests: the fixed-effect columns are not estimable on the grid of the formula's "
                         "variables; pass the hypotheses to ftest(L)")
    coef, *_ = np.linalg.lstsq(x, rdx, rcond=None)
    if np.max(np.abs(x @ coef - rdx)) > 1e-8 * max(1.0, np.max(np.abs(rdx))):
        warnings.warn("the fixed part is not hierarchical (a term lacks a term it contains); its type 3 "
                      "hypotheses are defined on a balanced grid of the variables, which may differ from "
                      "lmerTest's data-weighted ones", UserWarning, stacklevel=3)
    L = zapsmall(coef.T)  # rows: dummy-coded columns; columns: X's columns
    order = sorted(range(len(terms)), key=lambda i: -len(terms[i].factors))  # stable, as R's order()
    for i in order:
        inside = [c for o in terms if _contains(terms[i], o) for c in o.columns]
        if inside:
            cols = list(terms[i].columns)
            L[:, cols] = zapsmall(_residuals(L[:, inside], L[:, cols]))
    # X's columns are dummy-coded columns too: find each one among rdX's.
    same = [np.flatnonzero(np.all(np.isclose(rdx, x[:, [j]], rtol=1e-12, atol=1e-12), axis=0)) for j in range(p)]
    if any(s.size == 0 for s in same):
        raise ValueError("type 3 tests: a fixed-effect column is not a dummy-coded column of its term "
                         "(a coding other than treatment contrasts?); pass the hypotheses to ftest(L)")
    L = L[[int(s[0]) for s in same]]
    out = {}
    for t in terms:
        h = L[:, list(t.columns)].T
        out[t.name] = h[np.abs(h).sum(axis=1) > 1e-8]
    return out


def term_contrasts(design: Any, type: int | str) -> dict[str, np.ndarray]:
    """Hypothesis matrices per model term for F tests of the given type (1 or 3; "I"/"III" accepted)."""
    kind = {"1": 1, "I": 1, "3": 3, "III": 3}.get(str(type).upper())
    if kind is None:
        raise ValueError(f"type must be 1 or 3 (or 'I', 'III'), not {type!r}")
    return type1_contrasts(design) if kind == 1 else type3_contrasts(design)
