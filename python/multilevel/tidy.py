"""Tidy tables of any fitted model, named as R's broom.mixed and broom name them.

:func:`tidy` gives one row per estimate, :func:`glance` one row per model and
:func:`to_dict` a JSON-serializable dict of everything a front end shows. The
column names are broom.mixed's (``tidy.merMod``, ``glance.merMod``,
``tidy.gls``, ``glance.gls``) and broom's (``tidy.geeglm``,
``glance.geeglm``), so code written against those reads these frames
unchanged; ``tests/test_tidy.py`` checks names and values against them.

Terms keep the package's names (``period[T.2]``) except the intercept, spelled
``(Intercept)`` as R spells it, so that broom.mixed's random-parameter names
(``sd__(Intercept)``, ``cor__(Intercept).Days``) come out the same.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.gee.result import GeeResult
from multilevel.glmm.result import GlmmResult
from multilevel.gls.result import GlsResult
from multilevel.inference import wald_conf_int
from multilevel.lmm.result import LmmResult

EFFECTS = ("fixed", "ran_pars", "ran_vals")
# broom.mixed's reorder_cols(): its column order, of the columns present.
_COLUMN_ORDER = ("effect", "group", "level", "term", "estimate", "std.error", "statistic", "df", "p.value",
                 "conf.low", "conf.high")


def r_name(name: str) -> str:
    """A coefficient or random-effect column name as R writes it (``Intercept`` -> ``(Intercept)``).

    Examples
    --------
    >>> r_name("Intercept"), r_name("Days")
    ('(Intercept)', 'Days')
    """
    return "(Intercept)" if name == "Intercept" else name


def _effects_list(effects: str | Sequence[str], allowed: tuple[str, ...]) -> list[str]:
    wanted = [effects] if isinstance(effects, str) else list(effects)
    unknown = [e for e in wanted if e not in allowed]
    if unknown or not wanted:
        raise ValueError(f"effects must be among {', '.join(allowed)} for this model, not {unknown or wanted}")
    return [e for e in allowed if e in wanted]  # broom.mixed's row order, whatever order they are asked in


def _check_level(conf_level: float) -> float:
    if not 0.0 < conf_level < 1.0:
        raise ValueError(f"conf_level must be in (0, 1), not {conf_level}")
    return float(conf_level)


def _fixed_rows(fit: Any, statistic: pd.Series, pvalues: pd.Series, conf: pd.DataFrame | None) -> pd.DataFrame:
    out = pd.DataFrame({"term": [r_name(n) for n in fit.params.index], "estimate": fit.params.to_numpy(),
                        "std.error": fit.bse.to_numpy(), "statistic": statistic.to_numpy(),
                        "p.value": pvalues.to_numpy()})
    if getattr(fit, "ddf", "normal") != "normal":  # t tests on approximate df: a df column, as lmerTest fits get
        out.insert(4, "df", fit.df.to_numpy())
    if conf is not None:
        out["conf.low"], out["conf.high"] = conf.iloc[:, 0].to_numpy(), conf.iloc[:, 1].to_numpy()
    return out


def _make_unique(names: list[str]) -> list[str]:
    """R's ``make.unique``: the second ``g`` becomes ``g.1`` (lme4's names of ``(x || g)`` terms)."""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}.{seen[n]}")
        else:
            seen[n] = 0
            out.append(n)
    return out


def _ran_pars_rows(fit: LmmResult) -> pd.DataFrame:
    """SDs and correlations per term, in lme4's ``as.data.frame(VarCorr(.), order = "lower.tri")`` order."""
    terms = fit.design.terms
    rows = []
    for t, group, cov in zip(terms, _make_unique([t.group for t in terms]), fit.covariance_matrices()):
        sd = np.sqrt(np.diag(cov))
        cols = [r_name(c) for c in t.columns]
        for c in range(t.p):
            for r in range(c, t.p):
                if r == c:
                    rows.append((group, f"sd__{cols[c]}", sd[c]))
                else:
                    corr = cov[r, c] / (sd[r] * sd[c]) if sd[r] > 0 and sd[c] > 0 else np.nan
                    rows.append((group, f"cor__{cols[c]}.{cols[r]}", corr))
    if fit.has_residual:
        rows.append(("Residual", "sd__Observation", fit.sigma))
    return pd.DataFrame(rows, columns=["group", "term", "estimate"])


def _ran_vals_rows(fit: LmmResult, z: float | None) -> pd.DataFrame:
    """Conditional modes and their conditional SDs, group by group, column by column (broom.mixed's order)."""
    condvar = fit.ranef_condvar()
    parts = []
    for group, modes in fit.ranef.items():
        for col in modes.columns:
            sd = np.sqrt(condvar[group][col].to_numpy())
            part = pd.DataFrame({"group": group, "level": modes.index.astype(str), "term": r_name(col),
                                 "estimate": modes[col].to_numpy(), "std.error": sd})
            if z is not None:
                part["conf.low"], part["conf.high"] = part["estimate"] - z * sd, part["estimate"] + z * sd
            parts.append(part)
    return pd.concat(parts, ignore_index=True)


def _combine(parts: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Stack the effects as ``dplyr::bind_rows(.id = "effect")`` and order the columns as broom.mixed."""
    frames = [p.assign(effect=name) for name, p in parts.items()]
    out = pd.concat(frames, ignore_index=True)
    for col in ("group", "level"):  # missing labels as None, as R's NA, not a float NaN
        if col in out:
            out[col] = out[col].astype(object).where(out[col].notna(), None)
    return out[[c for c in _COLUMN_ORDER if c in out.columns]]


def tidy(fit: Any, effects: str | Sequence[str] = "fixed", conf_int: bool = False,
         conf_level: float = 0.95) -> pd.DataFrame:
    """One row per estimate, with broom.mixed's (mixed models) or broom's (gls, gee) columns.

    Parameters
    ----------
    fit : LmmResult, GlmmResult, GlsResult or GeeResult
    effects : str or list of str
        Mixed models: any of ``"fixed"`` (coefficients), ``"ran_pars"``
        (SD of each random effect, ``sd__x``; correlations, ``cor__x.y``; the
        residual SD, group ``"Residual"``, ``sd__Observation``) and
        ``"ran_vals"`` (conditional modes by ``group`` and ``level``, with
        their conditional SDs as ``std.error``). Rows come in that order.
        broom.mixed's default is ``["ran_pars", "fixed"]``. gls and gee fits
        have ``"fixed"`` only.
    conf_int : bool
        Add ``conf.low`` and ``conf.high``: Wald (normal) intervals for
        coefficients and conditional modes, as broom.mixed's default
        ``conf.method = "Wald"``; missing for the random parameters.
    conf_level : float
        Coverage of the intervals.

    Returns
    -------
    DataFrame
        Mixed models: ``effect``, ``group``, ``level``, ``term``,
        ``estimate``, ``std.error``, ``statistic``, ``p.value`` (the columns
        the chosen effects have). ``statistic`` is the fit's t (LMM) or z
        (GLMM) value, ``p.value`` the fit's own p-value (broom.mixed gives
        none for lmer fits without lmerTest); an LMM with a ddf method other
        than the normal one (``fit.with_ddf("satterthwaite")``) adds ``df``,
        as broom.mixed does for lmerTest fits, and its intervals use t. gls: ``term`` ... ``p.value``
        (t with n - p df, as nlme). gee: ``statistic`` is the Wald
        chi-square ``(estimate / std.error)^2``, as geepack and broom report it.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> tidy(fit, effects=["fixed", "ran_pars"]).round(2)[["effect", "group", "term", "estimate"]]
         effect     group                   term  estimate
    0     fixed      None            (Intercept)    251.41
    1     fixed      None                   Days     10.47
    2  ran_pars   Subject        sd__(Intercept)     24.74
    3  ran_pars   Subject  cor__(Intercept).Days      0.07
    4  ran_pars   Subject               sd__Days      5.92
    5  ran_pars  Residual        sd__Observation     25.59
    >>> list(tidy(fit, conf_int=True).columns)
    ['effect', 'term', 'estimate', 'std.error', 'statistic', 'p.value', 'conf.low', 'conf.high']
    """
    conf_level = _check_level(conf_level)
    alpha = 1.0 - conf_level
    if isinstance(fit, LmmResult):  # GlmmResult too
        wanted = _effects_list(effects, EFFECTS)
        parts: dict[str, pd.DataFrame] = {}
        if "fixed" in wanted:
            conf = fit.conf_int(alpha) if conf_int else None
            parts["fixed"] = _fixed_rows(fit, fit.tvalues, fit.pvalues, conf)
        if "ran_pars" in wanted:
            parts["ran_pars"] = _ran_pars_rows(fit)
            if conf_int:  # broom.mixed's Wald method has no interval for them
                parts["ran_pars"] = parts["ran_pars"].assign(**{"conf.low": np.nan, "conf.high": np.nan})
        if "ran_vals" in wanted:
            parts["ran_vals"] = _ran_vals_rows(fit, stats.norm.ppf(1 - alpha / 2) if conf_int else None)
        return _combine(parts)
    _effects_list(effects, ("fixed",))
    if isinstance(fit, GlsResult):
        # broom.mixed's confint() of a gls fit is the normal one (confint.default), not nlme's t interval
        conf = wald_conf_int(fit.params, fit.bse, alpha) if conf_int else None
        return _fixed_rows(fit, fit.tvalues, fit.pvalues, conf)
    if isinstance(fit, GeeResult):
        conf = fit.conf_int(alpha) if conf_int else None
        return _fixed_rows(fit, fit.zvalues**2, fit.pvalues, conf)
    raise TypeError(f"tidy() takes a fitted lmm, glmm, gls or gee model, not {type(fit).__name__}")


def glmm_sigma(fit: GlmmResult) -> float:
    """``sigma(fit)`` as glmer/glmmTMB report it: 1 without a dispersion, Gamma ``sqrt(phi)``, NB2 ``k``."""
    if fit.dispersion is None:
        return 1.0
    return math.sqrt(fit.dispersion) if fit.family.name == "gamma" else fit.dispersion


def glance(fit: Any) -> pd.DataFrame:
    """One row of model-level statistics, with broom.mixed's (mixed, gls) or broom's (gee) columns.

    Parameters
    ----------
    fit : LmmResult, GlmmResult, GlsResult or GeeResult

    Returns
    -------
    DataFrame
        One row. LMM: ``nobs``, ``sigma``, ``logLik``, ``AIC``, ``BIC``,
        ``REMLcrit`` (REML fits) or ``deviance`` (ML fits), ``df.residual``
        (``nobs`` less the number of parameters), as ``glance.merMod``.
        GLMM: the same with ``deviance`` the sum of squared deviance residuals
        (lme4's ``deviance()`` of a glmer fit, not ``-2 logLik``). gls:
        ``sigma``, ``df`` (number of coefficients), ``logLik``, ``AIC``,
        ``BIC``, ``df.residual`` (``nobs - df``), as ``glance.gls``. gee:
        ``df.residual``, ``n.clusters``, ``max.cluster.size``, ``alpha`` (the
        correlation parameter; missing unless there is exactly one),
        ``gamma`` (the scale), as ``glance.geeglm``.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> glance(fit).round(3)
       nobs   sigma   logLik       AIC       BIC  REMLcrit  df.residual
    0   180  25.592 -871.814  1755.628  1774.786  1743.628          174
    """
    if isinstance(fit, LmmResult):
        glmm = isinstance(fit, GlmmResult)
        row: dict[str, Any] = {"nobs": fit.nobs, "sigma": glmm_sigma(fit) if glmm else fit.sigma,
                               "logLik": fit.loglik, "AIC": fit.aic, "BIC": fit.bic}
        if glmm:
            row["deviance"] = float(np.sum(fit.resid("deviance").to_numpy() ** 2))
        else:
            row["REMLcrit" if fit.reml else "deviance"] = fit.deviance
        row["df.residual"] = fit.nobs - fit.df_model
    elif isinstance(fit, GlsResult):
        row = {"sigma": fit.sigma, "df": len(fit.params), "logLik": fit.loglik, "AIC": fit.aic, "BIC": fit.bic,
               "df.residual": fit.df_resid}
    elif isinstance(fit, GeeResult):
        row = {"df.residual": fit.nobs - len(fit.params), "n.clusters": fit.nclusters,
               "max.cluster.size": int(fit.cluster_sizes.max()),
               "alpha": float(fit.corr_params[0]) if fit.corr_params.size == 1 else np.nan, "gamma": fit.scale}
    else:
        raise TypeError(f"glance() takes a fitted lmm, glmm, gls or gee model, not {type(fit).__name__}")
    return pd.DataFrame([row])


def _plain(x: Any) -> Any:
    """numpy and pandas values as JSON's: floats, ints, lists, dicts; NaN and infinities as None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, pd.Series):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if x is None or isinstance(x, str):
        return x
    if pd.isna(x):
        return None
    return str(x)


def _matrix(frame: pd.DataFrame) -> dict[str, Any]:
    return {"names": [str(n) for n in frame.index], "values": frame.to_numpy().tolist()}


def to_dict(fit: Any) -> dict[str, Any]:
    """Everything a front end shows about a fit, as a JSON-serializable dict.

    Keys common to every model: ``model`` (``"lmm"``, ``"glmm"``, ``"gls"``,
    ``"gee"``), ``formula``, ``nobs``, ``params``, ``bse``, ``pvalues``
    (name -> value), ``cov_params`` (``names`` and row-major ``values``),
    ``converged``, ``tidy`` and ``glance`` (the frames above, as lists of
    records). Then, where they apply: ``loglik``, ``aic``, ``bic``,
    ``sigma``, ``theta``, ``varcorr`` (records), ``ngroups``, ``singular``,
    ``reml``, ``family``, ``link``, ``nagq``, ``dispersion``, ``method``,
    ``correlation``, ``corr_params``, ``variance_params``, ``scale``,
    ``cov_type``, ``nclusters``. NaN and infinite values are None, so
    ``json.dumps(..., allow_nan=False)`` accepts the result.

    Examples
    --------
    >>> import json
    >>> import multilevel as ml
    >>> fit = ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"))
    >>> d = to_dict(fit)
    >>> d["model"], d["nobs"], round(d["params"]["Days"], 4), d["singular"]
    ('lmm', 180, 10.4673, False)
    >>> len(json.dumps(d, allow_nan=False)) > 0
    True
    """
    kinds = ((GlmmResult, "glmm"), (LmmResult, "lmm"), (GlsResult, "gls"), (GeeResult, "gee"))
    kind = next((name for cls, name in kinds if isinstance(fit, cls)), None)  # GlmmResult before its base
    if kind is None:
        raise TypeError(f"to_dict() takes a fitted lmm, glmm, gls or gee model, not {type(fit).__name__}")
    out: dict[str, Any] = {
        "model": kind, "formula": fit.design.formula or None, "nobs": fit.nobs,
        "params": fit.params, "bse": fit.bse, "pvalues": fit.pvalues, "cov_params": _matrix(fit.cov_params()),
        "converged": fit.converged,
    }
    if isinstance(fit, LmmResult):
        out.update(loglik=fit.loglik, aic=fit.aic, bic=fit.bic, deviance=fit.deviance, sigma=fit.sigma,
                   theta=fit.theta, varcorr=fit.varcorr.to_dict("records"), ngroups=fit.ngroups,
                   singular=fit.singular, reml=fit.reml)
        if isinstance(fit, GlmmResult):
            out.update(family=fit.family.name, link=fit.family.link.name, nagq=fit.nagq, dispersion=fit.dispersion)
    elif isinstance(fit, GlsResult):
        out.update(loglik=fit.loglik, aic=fit.aic, bic=fit.bic, sigma=fit.sigma, method=fit.method,
                   correlation=fit.structure.name, corr_params=fit.corr_params, variance_params=fit.variance_params,
                   nclusters=fit.design.layout.nclusters)
    else:
        out.update(family=fit.family.name, link=fit.family.link.name, scale=fit.scale, correlation=fit.structure.name,
                   corr_params=fit.corr_params, cov_type=fit.cov_type, nclusters=fit.nclusters)
    out["tidy"] = tidy(fit).to_dict("records")
    out["glance"] = glance(fit).to_dict("records")[0]
    return _plain(out)
