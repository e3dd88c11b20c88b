"""Likelihood-ratio tests between nested fits, laid out as lme4's ``anova``.

Each model family says how many parameters a fit has, what its
log-likelihood is, and how to refit it by maximum likelihood (:func:`ml_refit`);
the table is built the same way for all of them.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

COLUMNS = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]


def _kind(fit: Any) -> str:
    from multilevel.glmm.result import GlmmResult
    from multilevel.gls.result import GlsResult
    from multilevel.lmm.result import LmmResult

    if isinstance(fit, GlmmResult):
        return "glmm"
    if isinstance(fit, LmmResult):
        return "lmm"
    if isinstance(fit, GlsResult):
        return "gls"
    raise TypeError(f"anova compares lmm, glmm and gls fits, not a {type(fit).__name__}")


def is_reml(fit: Any) -> bool:
    """Whether a fit maximized the restricted likelihood."""
    kind = _kind(fit)
    return bool(fit.reml) if kind == "lmm" else kind == "gls" and fit.method == "REML"


def npar(fit: Any) -> int:
    """Estimated parameters: fixed effects, variance parameters and the residual scale where there is one."""
    return int(fit.df_model)


def ml_refit(fit: Any) -> Any:
    """The same model fitted by maximum likelihood (on the same design and core; the data are not re-read)."""
    kind = _kind(fit)
    if kind == "lmm":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a singular ML refit is reported by the refit's own flags
            return fit._ml_refit()
    if kind == "gls":
        from multilevel.gls.fit import fit_gls_design

        return fit_gls_design(fit.design, fit.structure, method="ML")
    return fit


def _same_data(fits: list[Any]) -> None:
    nobs = {f.nobs for f in fits}
    if len(nobs) > 1:
        raise ValueError(f"the fits use different numbers of rows ({sorted(nobs)}); models compared by a "
                         "likelihood-ratio test must be fitted to the same rows")
    ys = [getattr(f.design, "y", None) for f in fits]
    if all(y is not None for y in ys) and not all(np.array_equal(ys[0], y) for y in ys[1:]):
        raise ValueError("the fits have different responses; models compared by a likelihood-ratio test must be "
                         "fitted to the same response")


def anova(*fits: Any, refit: bool = True) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits of ``lmm``, ``glmm`` or ``gls``, as lme4's ``anova``.

    Parameters
    ----------
    *fits : two or more results of the same family, fitted to the same rows
    refit : bool, default True
        REML fits are refitted by maximum likelihood first (with a warning
        saying so), as lme4 does: REML criteria of models with different
        fixed effects are not comparable. ``False`` compares the criteria as
        they are, and is refused when REML fits have different fixed effects.

    Returns
    -------
    DataFrame
        One row per model (index ``fit0``, ``fit1``, ... in the order given),
        ordered by ``npar``: ``npar``, ``AIC``, ``BIC`` (each fit's own), ``logLik``,
        ``deviance`` (``-2 logLik``), and against the row above ``Chisq``
        (``2`` times the gain in log-likelihood, at least 0), ``Df`` and
        ``Pr(>Chisq)``.

    Examples
    --------
    >>> import warnings
    >>> from multilevel import anova, lmm
    >>> from multilevel.datasets import load_dataset
    >>> sleep = load_dataset("sleepstudy")
    >>> m0 = lmm("Reaction ~ Days + (1 | Subject)", sleep, reml=False)
    >>> m1 = lmm("Reaction ~ Days + (Days | Subject)", sleep, reml=False)
    >>> table = anova(m0, m1)
    >>> table["Df"].tolist()[1], round(float(table["Chisq"].iloc[1]), 3)
    (2.0, 42.139)
    """
    if len(fits) < 2:
        raise ValueError("anova needs at least two fits to compare")
    if not isinstance(refit, bool):
        raise TypeError(f"refit must be True or False, not {refit!r}")
    kinds = {_kind(f) for f in fits}
    if len(kinds) > 1:
        raise ValueError(f"anova compares fits of one family, not a mix of {', '.join(sorted(kinds))}")
    fits = list(fits)
    _same_data(fits)
    reml = [is_reml(f) for f in fits]
    if any(reml):
        if refit:
            warnings.warn("refitting model(s) with ML (instead of REML)", UserWarning, stacklevel=2)
            fits = [ml_refit(f) if r else f for f, r in zip(fits, reml)]
        else:
            if not all(reml):
                raise ValueError("refit=False cannot compare REML fits with ML fits; use refit=True")
            names = {tuple(f.params.index) for f in fits}
            if len(names) > 1:
                raise ValueError("REML criteria of models with different fixed effects are not comparable; "
                                 "use refit=True (refits by ML) or fit with reml=False")
    rows = []
    for i, f in enumerate(fits):
        ll = float(f.loglik)  # AIC and BIC as each family defines them (nlme: BIC of a REML fit uses n - p)
        rows.append({"model": f"fit{i}", "npar": npar(f), "AIC": float(f.aic), "BIC": float(f.bic),
                     "logLik": ll, "deviance": -2 * ll})
    table = pd.DataFrame(rows).set_index("model")
    table = table.iloc[np.argsort(table["npar"].to_numpy(), kind="stable")]
    table.index.name = None
    gain = np.diff(table["logLik"].to_numpy())
    df = np.diff(table["npar"].to_numpy()).astype(float)
    chisq = 2 * np.maximum(gain, 0.0)
    table["Chisq"] = np.r_[np.nan, chisq]
    table["Df"] = np.r_[np.nan, df]
    pvalue = np.where(df > 0, stats.chi2.sf(chisq, np.where(df > 0, df, 1.0)), np.nan)
    table["Pr(>Chisq)"] = np.r_[np.nan, pvalue]
    if np.any(df == 0) or np.any(gain < -1e-8 * np.maximum(1.0, np.abs(table["logLik"].to_numpy()[1:]))):
        warnings.warn("the models are not nested in this order (equal numbers of parameters, or a larger model "
                      "with a lower likelihood); compare them by AIC and BIC", UserWarning, stacklevel=2)
    return table[COLUMNS]
