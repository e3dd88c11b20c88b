"""Wald inference shared by the model results: coefficient tables, p-values
and confidence intervals from estimates and their covariance."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def standard_errors(cov: pd.DataFrame) -> pd.Series:
    """Square roots of the diagonal of a covariance matrix."""
    return pd.Series(np.sqrt(np.diag(cov.to_numpy())), index=cov.index)


def normal_pvalues(stat: pd.Series) -> pd.Series:
    """Two-sided p-values of statistics referred to the standard normal."""
    return pd.Series(2.0 * stats.norm.sf(np.abs(stat.to_numpy())), index=stat.index)


def wald_conf_int(params: pd.Series, bse: pd.Series, alpha: float = 0.05,
                  df: np.ndarray | None = None) -> pd.DataFrame:
    """Intervals ``params +/- z_{1-alpha/2} bse``, or with t quantiles where ``df`` is given and finite.

    Examples
    --------
    >>> ci = wald_conf_int(pd.Series([1.0], index=["x"]), pd.Series([0.5], index=["x"]))
    >>> [round(v, 4) for v in ci.loc["x"]]
    [0.02, 1.98]
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    z = np.full(len(params), stats.norm.ppf(1.0 - alpha / 2.0))
    if df is not None:
        df = np.asarray(df, dtype=float)
        finite = np.isfinite(df)
        z[finite] = stats.t.ppf(1.0 - alpha / 2.0, df[finite])
    lo, hi = alpha / 2.0, 1.0 - alpha / 2.0
    return pd.DataFrame(
        {f"{lo:.3g}": params - z * bse, f"{hi:.3g}": params + z * bse}, index=params.index
    )


def coefficient_table(params: pd.Series, bse: pd.Series, df: np.ndarray | float | None = None, *,
                      df_column: bool = True) -> pd.DataFrame:
    """Estimate, standard error, Wald statistic and two-sided p-value per coefficient, in R's names.

    The statistic is named after the distribution its p-value refers to, the same rule in
    every family: ``z value`` and ``Pr(>|z|)`` for the normal (``df`` None: glmer, geepack,
    whose ``Wald`` column is the square, and lmm's default), ``t value`` and ``Pr(>|t|)`` for
    the t distribution with ``df`` degrees of freedom, after a ``df`` column (lmerTest) unless
    ``df_column`` is false (nlme's gls, whose df is the one ``n - p``). Infinite ``df`` give
    normal p-values.

    Examples
    --------
    >>> est, se = pd.Series([1.0], index=["x"]), pd.Series([0.5], index=["x"])
    >>> list(coefficient_table(est, se).columns)
    ['Estimate', 'Std. Error', 'z value', 'Pr(>|z|)']
    >>> list(coefficient_table(est, se, 10.0).columns)
    ['Estimate', 'Std. Error', 'df', 't value', 'Pr(>|t|)']
    """
    stat = params / bse
    if df is None:
        return pd.DataFrame(
            {"Estimate": params, "Std. Error": bse, "z value": stat, "Pr(>|z|)": normal_pvalues(stat)}
        )
    from multilevel.inference.ddf import t_pvalues  # here: ddf imports this module (through satterthwaite)

    df = np.broadcast_to(np.asarray(df, dtype=float), stat.shape)
    columns: dict[str, object] = {"Estimate": params, "Std. Error": bse}
    if df_column:
        columns["df"] = pd.Series(df, index=params.index)
    columns["t value"] = stat
    columns["Pr(>|t|)"] = pd.Series(t_pvalues(stat.to_numpy(), df), index=params.index)
    return pd.DataFrame(columns)


def prediction_with_se(X: np.ndarray, beta: np.ndarray, cov: np.ndarray, index: pd.Index,
                       offset: np.ndarray | float = 0.0) -> pd.DataFrame:
    """``fit = X beta (+ offset)`` and ``se.fit = sqrt(diag(X V X'))`` per row (R's ``predict(se.fit = TRUE)``).

    Examples
    --------
    >>> out = prediction_with_se(np.array([[1.0, 2.0]]), np.array([1.0, 0.5]), np.eye(2) * 0.01, pd.RangeIndex(1))
    >>> [round(v, 4) for v in out.iloc[0]]
    [2.0, 0.2236]
    """
    fit = X @ beta + offset
    se = np.sqrt(np.einsum("ij,jk,ik->i", X, cov, X))
    return pd.DataFrame({"fit": fit, "se.fit": se}, index=index)


def covariance_from_rx(rx: np.ndarray) -> np.ndarray:
    """``(RX RX')^-1`` for the lower-triangular factor RX of ``X'V^-1 X / sigma^2`` (the core's ``RX``)."""
    rinv = np.linalg.inv(rx)
    return rinv.T @ rinv
