"""Estimated marginal means over a reference grid, and contrasts of them, as R's emmeans.

The reference grid has every level of each categorical variable of the fixed
part and each numeric variable at its mean (or the values given in ``at``).
An EMM of a combination of the ``specs`` (and ``by``) factors is the
equally weighted average of the grid's predictions ``x' beta`` over the other
factors: a linear function ``l' beta`` with standard error ``sqrt(l' V l)``
and the fit's degrees of freedom for ``l`` (Kenward-Roger or Satterthwaite
after ``with_ddf``; infinite for z-based fits). On the response scale
(``type="response"``) estimates and interval ends are back-transformed by
the inverse link and standard errors by the delta method.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

ADJUSTMENTS = ("tukey", "bonferroni", "holm", "sidak", "fdr", "none")


@dataclass(frozen=True)
class LinearInference:
    """What a fit offers for linear functions of its coefficients."""

    beta: np.ndarray
    cov: np.ndarray
    df_of: Callable[[np.ndarray], float]
    link: Any  # a multilevel.families.Link, or None for an identity-link model
    family: str | None
    ddf_name: str


def linear_inference(fit: Any) -> LinearInference:
    """Coefficients, their covariance and df for each family's result (emmeans' per-model defaults)."""
    from multilevel.gee.result import GeeResult
    from multilevel.glmm.result import GlmmResult
    from multilevel.gls.result import GlsResult
    from multilevel.lmm.result import LmmResult

    beta = fit.params.to_numpy()
    cov = fit.cov_params().to_numpy()
    if isinstance(fit, GlmmResult):
        return LinearInference(beta, cov, lambda lv: np.inf, fit.family.link, fit.family.name, "asymptotic")
    if isinstance(fit, LmmResult):
        method = fit._ddf_method()
        name = fit.cov_type if fit.cov_type != "model" else fit.ddf
        return LinearInference(beta, cov, method.contrast_df, None, None, name)
    if isinstance(fit, GlsResult):  # emmeans' mode = "df.error": n - p - the correlation and variance parameters
        df = float(fit.nobs - len(beta) - len(fit.corr_params) - len(fit.variance_params))
        return LinearInference(beta, cov, lambda lv: df, None, None, "df.error")
    if isinstance(fit, GeeResult):
        return LinearInference(beta, cov, lambda lv: np.inf, fit.family.link, fit.family.name, "asymptotic")
    raise TypeError(f"emmeans takes lmm, glmm, gls and gee results, not {type(fit).__name__}")


def _as_list(x: Any) -> list[str]:
    if x is None:
        return []
    return [x] if isinstance(x, str) else list(x)


def reference_grid(fixed: Any, at: dict[str, Any] | None = None) -> pd.DataFrame:
    """Every combination of the categorical variables' levels with each numeric variable at its mean
    (or at ``at``'s values, which may also restrict a categorical variable's levels)."""
    from multilevel.inference.term_contrasts import formula_variables

    if fixed is None or fixed.spec is None:
        raise ValueError("emmeans needs a formula fit (an array-level fit has no variables to make a grid of)")
    at = dict(at or {})
    levels, numeric = formula_variables(fixed)
    unknown = [k for k in at if k not in levels and k not in numeric]
    if unknown:
        raise ValueError(f"at= names {unknown}, which are not variables of the fixed part "
                         f"({sorted(levels) + sorted(numeric)})")
    values: dict[str, list[Any]] = {}
    for name, lev in levels.items():
        chosen = list(np.atleast_1d(at[name])) if name in at else lev
        bad = [v for v in chosen if v not in lev]
        if bad:
            raise ValueError(f"at={{{name!r}: ...}} has values {bad} that are not levels of {name!r} ({lev})")
        values[name] = chosen
    means = fixed.numeric_means or {}
    for name in sorted(numeric):
        if name in at:
            values[name] = [float(v) for v in np.atleast_1d(at[name])]
        elif name in means:
            values[name] = [means[name]]
        else:
            raise ValueError(f"the mean of {name!r} is not known for this fit (rows read in chunks); "
                             f"pass at={{{name!r}: value}}")
    grid = pd.MultiIndex.from_product(list(values.values()), names=list(values)).to_frame(index=False)
    for name, lev in levels.items():
        grid[name] = pd.Categorical(grid[name], categories=lev)
    return grid


class EmmResult:
    """Estimated marginal means: ``table`` (one row per combination), ``pairs()`` and ``contrast()``."""

    def __init__(self, table: pd.DataFrame, L: np.ndarray, inference: LinearInference, factors: list[str],
                 by: list[str], averaged: list[str], scale: str, level: float) -> None:
        self.table = table
        self.L = L
        self.inference = inference
        self.factors = factors
        self.by = by
        self.averaged = averaged
        self.scale = scale
        self.level = level

    def _labels(self) -> list[str]:
        """Each EMM's name in contrasts: its levels, prefixed by the factor where a level looks like a number
        (emmeans' ``Product1 - Product2``)."""
        def name(f: str, level: Any) -> str:
            text = str(level)
            try:
                float(text)
            except ValueError:
                return text
            return f"{f}{text}"

        return [" ".join(name(f, self.table[f].iloc[i]) for f in self.factors) for i in range(len(self.table))]

    def _families(self) -> list[np.ndarray]:
        """Row indices of each ``by`` group (one family of contrasts each)."""
        if not self.by:
            return [np.arange(len(self.table))]
        keys = self.table[self.by].astype(str).agg("\x1f".join, axis=1)
        return [np.flatnonzero(keys.to_numpy() == k) for k in dict.fromkeys(keys)]

    def contrast(self, method: str | dict[str, Any] = "pairwise", adjust: str | None = None) -> ContrastResult:
        """Contrasts of the EMMs within each ``by`` group.

        Parameters
        ----------
        method : "pairwise", "revpairwise", "trt.vs.ctrl", "eff", or a dict name -> weights
        adjust : one of "tukey" (pairwise kinds only), "bonferroni", "holm", "sidak", "fdr", "none";
            default as emmeans: "tukey" for pairwise kinds, "fdr" for "eff"; "bonferroni" for
            "trt.vs.ctrl" (emmeans uses "dunnettx", an approximation not implemented here).
        """
        names = self._labels()
        rows, weights = [], []
        for family in self._families():
            for label, w in _contrast_weights(method, [names[i] for i in family]).items():
                full = np.zeros(len(self.table))
                full[family] = w
                rows.append((label, family))
                weights.append(full)
        if not weights:
            raise ValueError("no contrasts: each group has a single estimated marginal mean")
        kind = method if isinstance(method, str) else "custom"
        adjust = adjust or {"pairwise": "tukey", "revpairwise": "tukey", "eff": "fdr"}.get(kind, "bonferroni")
        if adjust not in ADJUSTMENTS:
            raise ValueError(f"unknown adjust {adjust!r}; choose one of {list(ADJUSTMENTS)}")
        if adjust == "tukey" and kind not in ("pairwise", "revpairwise"):
            raise ValueError("the tukey adjustment is for pairwise comparisons; choose another adjust")
        return ContrastResult(self, rows, np.array(weights), adjust)

    def pairs(self, adjust: str | None = None, reverse: bool = False) -> ContrastResult:
        """All pairwise differences (``"a - b"``; ratios on the response scale of log and logit links)."""
        return self.contrast("revpairwise" if reverse else "pairwise", adjust)

    def __repr__(self) -> str:
        notes = []
        if self.averaged:
            notes.append(f"Results are averaged over the levels of: {', '.join(self.averaged)}")
        notes.append(f"Degrees-of-freedom method: {self.inference.ddf_name}")
        notes.append(f"Confidence level used: {self.level:g}")
        if self.scale == "response" and self.inference.link is not None:
            notes.append(f"Intervals are back-transformed from the {self.inference.link.name} scale")
        return self.table.to_string(index=False) + "\n\n" + "\n".join(notes)


def _contrast_weights(method: str | dict[str, Any], names: list[str]) -> dict[str, np.ndarray]:
    k = len(names)
    eye = np.eye(k)
    if isinstance(method, dict):
        out = {}
        for label, w in method.items():
            w = np.asarray(w, dtype=float)
            if w.shape != (k,):
                raise ValueError(f"contrast {label!r} has {w.size} weights; there are {k} means ({names})")
            out[label] = w
        return out
    if method == "pairwise":
        return {f"{names[i]} - {names[j]}": eye[i] - eye[j] for i, j in itertools.combinations(range(k), 2)}
    if method == "revpairwise":
        return {f"{names[j]} - {names[i]}": eye[j] - eye[i] for i, j in itertools.combinations(range(k), 2)}
    if method == "trt.vs.ctrl":
        return {f"{names[i]} - {names[0]}": eye[i] - eye[0] for i in range(1, k)}
    if method == "eff":
        return {f"{names[i]} effect": eye[i] - 1.0 / k for i in range(k)}
    raise ValueError(f"unknown contrast method {method!r}; choose 'pairwise', 'revpairwise', 'trt.vs.ctrl', "
                     "'eff' or pass a dict of weights")


def _adjust(p: np.ndarray, t: np.ndarray, df: np.ndarray, method: str, nmeans: int) -> np.ndarray:
    """Adjusted p-values of one family (emmeans' methods)."""
    m = p.size
    if method == "none" or m <= 1 and method != "tukey":
        return p
    if method == "bonferroni":
        return np.minimum(p * m, 1.0)
    if method == "sidak":
        return 1.0 - (1.0 - p) ** m
    if method == "holm":
        order = np.argsort(p)
        adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
        out = np.empty(m)
        out[order] = np.minimum(adj, 1.0)
        return out
    if method == "fdr":
        order = np.argsort(p)[::-1]
        adj = np.minimum.accumulate(p[order] * m / (m - np.arange(m)))
        out = np.empty(m)
        out[order] = np.minimum(adj, 1.0)
        return out
    # Tukey: the studentized range of nmeans means (infinite df as a large one: scipy needs finite df).
    dfs = np.where(np.isfinite(df), df, 1e7)
    return np.array([stats.studentized_range.sf(abs(ti) * np.sqrt(2.0), nmeans, d) for ti, d in zip(t, dfs)])


class ContrastResult:
    """Contrasts of estimated marginal means, with adjusted p-values; ``table`` holds them."""

    def __init__(self, emm: EmmResult, rows: list[tuple[str, np.ndarray]], weights: np.ndarray, adjust: str) -> None:
        inf = emm.inference
        L = weights @ emm.L
        est = L @ inf.beta
        se = np.sqrt(np.einsum("ij,jk,ik->i", L, inf.cov, L))
        df = np.array([inf.df_of(lv) for lv in L])
        stat = est / se
        p = np.where(np.isinf(df), 2 * stats.norm.sf(np.abs(stat)),
                     2 * stats.t.sf(np.abs(stat), np.where(np.isinf(df), 1.0, df)))
        families: dict[int, list[int]] = {}
        for i, (_, family) in enumerate(rows):
            families.setdefault(id(family), []).append(i)
        padj = np.empty_like(p)
        for idx in families.values():
            idx_a = np.array(idx)
            nmeans = rows[idx[0]][1].size
            padj[idx_a] = _adjust(p[idx_a], stat[idx_a], df[idx_a], adjust, nmeans)
        stat_name = "z.ratio" if np.all(np.isinf(df)) else "t.ratio"
        table = pd.DataFrame({"contrast": [r[0] for r in rows]})
        for b in emm.by:  # the by group of each contrast, as emmeans lists it
            table[b] = [emm.table[b].iloc[family[0]] for _, family in rows]
        link = inf.link
        if emm.scale == "response" and link is not None and link.name in ("log", "logit"):
            ratio = np.exp(est)
            table["contrast"] = table["contrast"].str.replace(" - ", " / ", regex=False)
            table["odds.ratio" if link.name == "logit" else "ratio"] = ratio
            table["SE"] = ratio * se
            table["df"] = df
            table["null"] = 1.0
        else:
            table["estimate"] = est
            table["SE"] = se
            table["df"] = df
        table[stat_name] = stat
        table["p.value"] = padj
        self.table = table
        self.adjust = adjust
        self.L = L

    def __repr__(self) -> str:
        return self.table.to_string(index=False) + f"\n\nP value adjustment: {self.adjust}"


def emmeans(fit: Any, specs: str | list[str], by: str | list[str] | None = None, at: dict[str, Any] | None = None,
            type: str = "link", level: float = 0.95) -> EmmResult:
    """Estimated marginal means of ``fit`` for the factors ``specs`` (within each level of ``by``).

    Parameters
    ----------
    fit : an lmm, glmm, gls or gee result (fitted from a formula)
    specs : factor name(s) whose combinations get a mean
    by : factor name(s): separate means (and contrast families) per level
    at : values for numeric variables (default their means) or a subset of a factor's levels
    type : "link" (the linear predictor) or "response" (back-transformed by the inverse link)
    level : confidence level of the intervals

    Returns
    -------
    EmmResult
        ``table`` with the factor columns, ``emmean`` (``prob``/``rate``/``response`` on the
        response scale), ``SE``, ``df``, and the interval (``lower.CL``/``upper.CL``, or
        ``asymp.LCL``/``asymp.UCL`` with infinite df); ``pairs()``, ``contrast()``.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmm("distance ~ age + Sex + (1 | Subject)", ml.load_dataset("Orthodont"))
    >>> emm = ml.emmeans(fit, "Sex")
    >>> emm.table["Sex"].tolist(), emm.table.columns.tolist()[1:3]
    (['Male', 'Female'], ['emmean', 'SE'])
    """
    if type not in ("link", "response"):
        raise ValueError(f"type must be 'link' or 'response', not {type!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), not {level}")
    inf = linear_inference(fit)
    fixed = fit.design.fixed
    grid = reference_grid(fixed, at)
    factors, by_list = _as_list(specs), _as_list(by)
    if not factors:
        raise ValueError("specs must name at least one factor")
    missing = [f for f in factors + by_list if f not in grid.columns]
    if missing:
        raise ValueError(f"{missing} are not variables of the fixed part; the grid has {list(grid.columns)}")
    X = fixed.model_matrix(grid)
    keys = factors + by_list
    groups = grid.groupby(keys, observed=True, sort=False).indices
    combos = pd.DataFrame([np.atleast_1d(k) for k in groups], columns=keys)
    L = np.stack([X[idx].mean(axis=0) for idx in groups.values()])
    # Sort as emmeans: by groups outermost, then the specs in their level order.
    sort_cols = by_list + factors[::-1]
    ranks = pd.DataFrame({c: pd.Categorical(combos[c], categories=grid[c].unique()).codes
                          if isinstance(grid[c].dtype, pd.CategoricalDtype) else combos[c] for c in sort_cols})
    perm = np.lexsort([ranks[c].to_numpy() for c in sort_cols[::-1]])
    combos, L = combos.iloc[perm].reset_index(drop=True), L[perm]
    est = L @ inf.beta
    se = np.sqrt(np.einsum("ij,jk,ik->i", L, inf.cov, L))
    df = np.array([inf.df_of(lv) for lv in L])
    q = np.where(np.isinf(df), stats.norm.ppf(0.5 + level / 2), stats.t.ppf(0.5 + level / 2, np.where(np.isinf(df),
                                                                                                      1.0, df)))
    lo, hi = est - q * se, est + q * se
    table = combos.copy()
    name = "emmean"
    if type == "response" and inf.link is not None:
        mu, mu_eta = inf.link.inverse_and_mu_eta(est)
        name = {"binomial": "prob", "poisson": "rate"}.get(inf.family, "response")
        est, se = np.asarray(mu), np.abs(mu_eta) * se
        lo, hi = np.sort(np.stack([inf.link.inverse(lo), inf.link.inverse(hi)]), axis=0)
    table[name] = est
    table["SE"] = se
    table["df"] = df
    asymptotic = np.all(np.isinf(df))
    table["asymp.LCL" if asymptotic else "lower.CL"] = lo
    table["asymp.UCL" if asymptotic else "upper.CL"] = hi
    averaged = [c for c in grid.columns if c not in keys and isinstance(grid[c].dtype, pd.CategoricalDtype)]
    return EmmResult(table, L, inf, factors, by_list, averaged, type, level)
