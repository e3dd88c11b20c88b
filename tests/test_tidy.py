"""multilevel.tidy / glance / to_dict against broom.mixed and broom
(tests/reference/tidy.json, made by tidy_reference.R).

Column names must be broom's exactly; the one deliberate difference is the
``p.value`` of LMM coefficients, which broom.mixed leaves out for lmer fits
(lmerTest adds it) and multilevel gives. Values: both sides are converged
tightly (see tidy_reference.R), so lmer, gls and geeglm agree to 1e-6
relative of each column's scale. glmer does not reach the exact optimum (its
PIRLS stops early, GLMM_DEFINITIONS.md), so its tables agree only as far as
tests/test_glmm_reference.py allows: estimates to 2e-3, standard errors to 2%.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml
from multilevel.tidy import glance, tidy, to_dict

REFERENCE = json.loads((Path(__file__).parent / "reference" / "tidy.json").read_text())["models"]
TIGHT = {"ftol_abs": 1e-15, "ftol_rel": 1e-16, "xtol_abs": 1e-12, "maxeval": 100000}


def _cbpp() -> pd.DataFrame:
    d = ml.load_dataset("cbpp")
    return d.assign(_y=d["incidence"] / d["size"])  # cbind(incidence, size - incidence): proportions, size weights


def _contraception() -> pd.DataFrame:
    d = ml.load_dataset("Contraception")
    return d.assign(_y=(d["use"] == d["use"].cat.categories[1]).astype(float))


FITS: dict[str, Callable[[], Any]] = {
    "sleepstudy_reml": lambda: ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"), **TIGHT),
    "sleepstudy_ml": lambda: ml.lmm("Reaction ~ Days + (Days | Subject)", ml.load_dataset("sleepstudy"),
                                    reml=False, **TIGHT),
    "sleepstudy_uncorr_reml": lambda: ml.lmm("Reaction ~ Days + (Days || Subject)", ml.load_dataset("sleepstudy"),
                                             **TIGHT),
    "pastes_reml": lambda: ml.lmm("strength ~ 1 + (1 | batch/cask)", ml.load_dataset("Pastes"), **TIGHT),
    "penicillin_ml": lambda: ml.lmm("diameter ~ 1 + (1 | plate) + (1 | sample)", ml.load_dataset("Penicillin"),
                                    reml=False, **TIGHT),
    "cbpp_laplace": lambda: ml.glmm("_y ~ period + (1 | herd)", _cbpp(), family="binomial", weights="size", **TIGHT),
    "contraception_slope": lambda: ml.glmm("_y ~ age + I(age**2) + urban + livch + (urban | district)",
                                           _contraception(), family="binomial", **TIGHT),
    "orthodont_cs_reml": lambda: ml.gls("distance ~ age", ml.load_dataset("Orthodont"), groups="Subject",
                                        corr="exchangeable"),
    "ovary_ar1_ml": lambda: ml.gls("follicles ~ np.sin(2*np.pi*Time) + np.cos(2*np.pi*Time)",
                                   ml.load_dataset("Ovary"), groups="Mare", corr="ar1", method="ML"),
    "ohio_exch": lambda: ml.gee("resp ~ age + smoke", ml.load_dataset("ohio"), groups="id", family="binomial",
                                corr="exchangeable"),
    "epil_ar1": lambda: ml.gee("y ~ lbase + trt + lage + V4", ml.load_dataset("epil"), groups="subject",
                               family="poisson", corr="ar1"),
}
_cache: dict[str, Any] = {}


def fitted(key: str) -> Any:
    if key not in _cache:
        _cache[key] = FITS[key]()
    return _cache[key]


def ours(key: str, table: str) -> pd.DataFrame:
    """Our frame for one of the reference's tables (see tidy_reference.R)."""
    fit, mixed = fitted(key), REFERENCE[key]["kind"] in ("lmer", "glmer")
    if table == "tidy_fixed":
        return tidy(fit)
    if table == "tidy_all":
        return tidy(fit, effects=["ran_pars", "fixed"] if mixed else "fixed", conf_int=True, conf_level=0.9)
    if table == "ran_vals":
        return tidy(fit, effects="ran_vals")
    return glance(fit)


def r_spelling(term: str) -> str:
    """A term of ours as R spells it: f[T.b] -> fb, x ** 2 -> x^2, np.sin(2 * np.pi * t) -> sin(2 * pi * t)."""
    term = re.sub(r"\[T\.([^\]]+)\]", r"\1", term)
    return term.replace(" ** ", "^").replace("np.", "")


CASES = [(key, table) for key, m in REFERENCE.items() for table in ("tidy_fixed", "tidy_all", "ran_vals", "glance")
         if table in m]


@pytest.mark.parametrize(("key", "table"), CASES)
def test_columns_are_broom_s(key: str, table: str) -> None:
    expected = list(REFERENCE[key][table]["columns"])
    if REFERENCE[key]["kind"] == "lmer" and "statistic" in expected:  # our one addition: the LMM p-value
        expected.insert(expected.index("statistic") + 1, "p.value")
    assert list(ours(key, table).columns) == expected


@pytest.mark.parametrize(("key", "table"), CASES)
def test_values_match_broom(key: str, table: str) -> None:
    ref, kind = REFERENCE[key][table], REFERENCE[key]["kind"]
    frame = ours(key, table)
    assert len(frame) == len(next(iter(ref["data"].values())))
    for col in ref["columns"]:
        want = ref["data"][col]
        if col in ("effect", "group", "level", "term"):
            got = [None if v is None else str(v) for v in frame[col]]
            assert [r_spelling(v) if v is not None and col == "term" else v for v in got] == want, col
            continue
        want = np.array([np.nan if v is None else v for v in want], dtype=float)
        got = frame[col].to_numpy(dtype=float)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=col)
        if col == "p.value" and kind == "glmer":
            # the statistics differ by the SEs' 2%; the p-value means the same: normal, two-sided
            statistic = np.array([np.nan if v is None else v for v in ref["data"]["statistic"]], dtype=float)
            np.testing.assert_allclose(want, 2 * stats.norm.sf(np.abs(statistic)), rtol=1e-10)
            continue
        if col == "p.value":  # geepack's 1 - pchisq() is 0 below 1e-16; ours is the exact tail
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-15, err_msg=col)
            continue
        scale = np.nanmax(np.abs(want)) if np.any(~np.isnan(want)) else 1.0
        if kind == "glmer":
            rtol = {"std.error": 2e-2, "statistic": 2e-2, "conf.low": 1e-2, "conf.high": 1e-2}.get(col, 2e-3)
            atol = 1e-2 * scale if table == "ran_vals" else rtol * scale
        else:
            rtol, atol = 1e-6, 1e-6 * scale
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=col)


@pytest.mark.parametrize("key", sorted(FITS))
def test_to_dict_is_plain_json(key: str) -> None:
    fit = fitted(key)
    d = to_dict(fit)
    back = json.loads(json.dumps(d, allow_nan=False))
    assert back["nobs"] == fit.nobs and back["converged"] == fit.converged
    assert back["params"] == pytest.approx(fit.params.to_dict(), rel=1e-15)
    assert np.allclose(back["cov_params"]["values"], fit.cov_params().to_numpy(), rtol=1e-15)
    assert back["cov_params"]["names"] == list(fit.params.index)
    assert back["glance"].keys() == set(glance(fit).columns)
    if isinstance(fit, ml.LmmResult):
        assert back["model"] == ("glmm" if isinstance(fit, ml.GlmmResult) else "lmm")
        assert back["singular"] == fit.singular and len(back["varcorr"]) == len(fit.varcorr)
        assert back["theta"] == pytest.approx(fit.theta.to_dict(), rel=1e-15)
    else:
        assert back["model"] == ("gls" if isinstance(fit, ml.GlsResult) else "gee")
        assert back["corr_params"] == pytest.approx(list(fit.corr_params), rel=1e-15)


def test_ran_vals_intervals_and_row_order() -> None:
    fit = fitted("sleepstudy_reml")
    t = tidy(fit, effects=["ran_vals", "fixed"], conf_int=True, conf_level=0.8)
    assert list(t["effect"].unique()) == ["fixed", "ran_vals"]  # broom.mixed's order, not the order asked
    rv = t[t.effect == "ran_vals"]
    z = stats.norm.ppf(0.9)
    np.testing.assert_allclose(rv["conf.high"] - rv["estimate"], z * rv["std.error"], rtol=1e-12)
    sd = np.sqrt(fit.ranef_condvar()["Subject"]["Days"].to_numpy())
    np.testing.assert_allclose(rv[rv.term == "Days"]["std.error"], sd, rtol=1e-15)
    assert t.loc[t.effect == "fixed", "statistic"].notna().all() and rv["statistic"].isna().all()


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(ValueError, match="effects must be among fixed, ran_pars, ran_vals"):
        tidy(fitted("sleepstudy_reml"), effects="ran_coefs")
    with pytest.raises(ValueError, match="effects must be among fixed for this model"):
        tidy(fitted("orthodont_cs_reml"), effects=["fixed", "ran_pars"])
    with pytest.raises(ValueError, match="conf_level"):
        tidy(fitted("ohio_exch"), conf_int=True, conf_level=95)
    for f in (tidy, glance, to_dict):
        with pytest.raises(TypeError, match="fitted lmm, glmm, gls or gee model"):
            f(object())


def test_exported_at_the_top_level() -> None:
    fit = fitted("sleepstudy_ml")
    pd.testing.assert_frame_equal(ml.tidy(fit), tidy(fit))
    pd.testing.assert_frame_equal(ml.glance(fit), glance(fit))


@pytest.mark.skipif(not hasattr(ml.LmmResult, "with_ddf"), reason="no ddf methods in this version")
def test_a_ddf_method_adds_the_df_column() -> None:
    fit = fitted("sleepstudy_reml").with_ddf("satterthwaite")
    t = tidy(fit, conf_int=True)
    assert list(t.columns) == ["effect", "term", "estimate", "std.error", "statistic", "df", "p.value",
                               "conf.low", "conf.high"]
    np.testing.assert_allclose(t["df"], fit.df.to_numpy(), rtol=1e-15)
    np.testing.assert_allclose(t["p.value"], fit.pvalues.to_numpy(), rtol=1e-15)
    np.testing.assert_allclose(t["conf.low"], fit.conf_int(0.05).iloc[:, 0].to_numpy(), rtol=1e-15)
