"""t and F tests of fixed effects with denominator degrees of freedom: Satterthwaite, Kenward-Roger or none.

Each method is an object with the same three answers (lmerTest's
``contest1D``/``contestMD`` split): the covariance of the estimates, the
df of one contrast, and the F test of a contrast matrix. Model results
choose one with ``with_ddf`` and use it for ``df``, ``tvalues``,
``pvalues``, ``conf_int``, ``coef_table``, ``anova`` and ``ftest``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.inference.kenward_roger import KenwardRoger
from multilevel.inference.satterthwaite import VarparSensitivity

DDF_METHODS = ("normal", "satterthwaite", "kenward-roger")
F_COLUMNS = ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
_ALIASES = {"kr": "kenward-roger", "kenward_roger": "kenward-roger", "kenwardroger": "kenward-roger",
            "satt": "satterthwaite", "lme4": "normal", "wald": "normal", "asymptotic": "normal"}


def check_ddf(method: str) -> str:
    """The canonical name of a ddf method; an unknown name is an error that lists the choices.

    Examples
    --------
    >>> check_ddf("Kenward-Roger")
    'kenward-roger'
    """
    if not isinstance(method, str):
        raise TypeError(f"ddf must be one of {list(DDF_METHODS)}, not {method!r}")
    key = method.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DDF_METHODS:
        raise ValueError(f"unknown ddf {method!r}; choose one of {list(DDF_METHODS)}")
    return key


def t_pvalues(tvalues: np.ndarray, df: np.ndarray) -> np.ndarray:
    """Two-sided p-values of t statistics (the normal where df is infinite)."""
    tvalues, df = np.asarray(tvalues, dtype=float), np.broadcast_to(np.asarray(df, dtype=float), np.shape(tvalues))
    return np.where(np.isinf(df), 2.0 * stats.norm.sf(np.abs(tvalues)),
                    2.0 * stats.t.sf(np.abs(tvalues), np.where(np.isinf(df), 1.0, df)))


def f_pvalue(f_value: float, num_df: float, den_df: float) -> float:
    """Upper tail of F(num_df, den_df); chi-square / num_df when den_df is infinite."""
    if np.isinf(den_df):
        return float(stats.chi2.sf(f_value * num_df, num_df))
    return float(stats.f.sf(f_value, num_df, den_df))


@dataclass(frozen=True)
class FTest:
    """One row of an F table; ``sum_sq`` and ``mean_sq`` are on the response's scale (lmerTest's)."""

    sum_sq: float
    mean_sq: float
    num_df: float
    den_df: float
    f_value: float
    p_value: float

    def row(self) -> list[float]:
        return [self.sum_sq, self.mean_sq, self.num_df, self.den_df, self.f_value, self.p_value]


def _ftest(f_unscaled: float, q: int, den_df: float, sigma: float, scale: float = 1.0) -> FTest:
    mean_sq = f_unscaled * sigma**2
    f_value = f_unscaled * scale
    return FTest(mean_sq * q, mean_sq, float(q), float(den_df), f_value, f_pvalue(f_value, q, den_df))


class DdfMethod(Protocol):
    """What the results ask of a ddf method."""

    name: str
    cov: np.ndarray

    def contrast_df(self, contrast: np.ndarray) -> float: ...

    def f_test(self, L: np.ndarray, beta: np.ndarray, sigma: float) -> FTest: ...


def _wald(L: np.ndarray, beta: np.ndarray, cov: np.ndarray) -> float:
    lb = L @ beta
    return float(lb @ np.linalg.solve(L @ cov @ L.T, lb))


@dataclass(frozen=True)
class NormalDdf:
    """No small-sample correction: z tests and chi-square / q F tests (today's default, as lme4)."""

    cov: np.ndarray
    name: str = "normal"

    def contrast_df(self, contrast: np.ndarray) -> float:
        return np.inf

    def f_test(self, L: np.ndarray, beta: np.ndarray, sigma: float) -> FTest:
        q = int(np.linalg.matrix_rank(L))
        return _ftest(_wald(L, beta, self.cov) / q, q, np.inf, sigma)


@dataclass(frozen=True)
class SatterthwaiteDdf:
    """Satterthwaite's df for every contrast (lmerTest's ``contest1D``/``contestMD``)."""

    sensitivity: VarparSensitivity
    name: str = "satterthwaite"

    @property
    def cov(self) -> np.ndarray:
        return self.sensitivity.vcov_beta

    def contrast_df(self, contrast: np.ndarray) -> float:
        return self.sensitivity.contrast_df(contrast)

    def f_test(self, L: np.ndarray, beta: np.ndarray, sigma: float) -> FTest:
        if L.shape[0] == 1:
            t2 = float((L[0] @ beta) ** 2 / (L[0] @ self.cov @ L[0]))
            return _ftest(t2, 1, self.contrast_df(L[0]), sigma)
        # Rotate to uncorrelated contrasts: eigenvectors of L C L'.
        evals, evecs = np.linalg.eigh(L @ self.cov @ L.T)
        evals, evecs = evals[::-1], evecs[:, ::-1]
        keep = evals > max(np.sqrt(np.finfo(float).eps) * evals[0], 0.0)
        rotated = (evecs.T @ L)[keep]
        d = evals[keep]
        q = int(keep.sum())
        f_value = float(np.sum((rotated @ beta) ** 2 / d) / q)
        nu = np.array([self.contrast_df(r) for r in rotated])
        return _ftest(f_value, q, combined_ddf(nu), sigma)


def combined_ddf(nu: np.ndarray, tol: float = 1e-8) -> float:
    """One denominator df from the df of q uncorrelated contrasts (lmerTest's ``get_Fstat_ddf``)."""
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    e = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * e / (e - nu.size)


@dataclass(frozen=True)
class KenwardRogerDdf:
    """Kenward-Roger's adjusted covariance and df (pbkrtest's ``vcovAdj``, ``Lb_ddf``, ``KRmodcomp``)."""

    kr: KenwardRoger
    name: str = "kenward-roger"

    @property
    def cov(self) -> np.ndarray:
        return self.kr.vcov_adjusted

    def contrast_df(self, contrast: np.ndarray) -> float:
        return self.kr.contrast_ddf(np.atleast_2d(contrast))[0]

    def f_test(self, L: np.ndarray, beta: np.ndarray, sigma: float) -> FTest:
        q = int(np.linalg.matrix_rank(L))
        den_df, scaling = self.kr.contrast_ddf(L)
        return _ftest(_wald(L, beta, self.cov) / q, q, den_df, sigma, scaling)


def check_contrasts(L: object, names: list[str]) -> np.ndarray:
    """A (q, p) float contrast matrix; a frame's columns must be the coefficient names."""
    if isinstance(L, pd.DataFrame):
        missing = [c for c in L.columns if c not in names]
        if missing:
            raise ValueError(f"contrast columns {missing} are not coefficients; the coefficients are {names}")
        L = L.reindex(columns=names, fill_value=0.0).to_numpy(dtype=float)
    arr = np.atleast_2d(np.asarray(L, dtype=float))
    if arr.ndim != 2 or arr.shape[1] != len(names):
        raise ValueError(f"the contrast matrix L has {arr.shape[-1]} columns; it needs one per fixed effect "
                         f"({len(names)}: {names})")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the contrast matrix L has missing or infinite entries")
    if not np.any(arr):
        raise ValueError("the contrast matrix L is zero")
    return arr


def f_table(method: DdfMethod, hypotheses: dict[str, np.ndarray], beta: np.ndarray, sigma: float) -> pd.DataFrame:
    """One F test per named hypothesis matrix, in lmerTest's columns."""
    rows = {name: method.f_test(L, beta, sigma).row() for name, L in hypotheses.items() if L.shape[0] > 0}
    return pd.DataFrame.from_dict(rows, orient="index", columns=F_COLUMNS)
