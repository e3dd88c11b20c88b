"""multilevel.gls against nlme (tests/reference/gls.json, made by gls_reference.R;
definitions in GLS_DEFINITIONS.md).

Log-likelihoods at fixed parameters agree to 1e-10; at the optimum ours is
never worse than nlme's; estimates agree to the optimizers' precision;
intervals are compared with the accurate-Hessian intervals the fixture
script computes (nlme's own finite-difference Hessian is noisy).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.datasets import load_dataset
from multilevel.gls.design import gls_design
from multilevel.gls.fit import GlsObjective
from multilevel.variance import VarExp, VarIdent, VarPower, get_variance

REFERENCE = json.loads((Path(__file__).parent / "reference" / "gls.json").read_text())
MODELS = REFERENCE["models"]


def model_inputs(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    df = load_dataset(m["dataset"])
    if m["subset"]:
        df = df.query(m["subset"]).reset_index(drop=True)
    formula = m["formula"].replace("sin(2*pi*", "np.sin(2*np.pi*").replace("cos(2*pi*", "np.cos(2*np.pi*")
    kwargs: dict[str, Any] = {"groups": m["groups"], "time": m["time"], "method": m["method"]}
    if m["correlation"]:
        kwargs["corr"] = m["correlation"]["type"]
    v = m["variance"]
    if v:
        if v["type"] == "ident":
            kwargs["variance"] = VarIdent(v["stratum"])
        else:
            df["_v"] = df.eval(v["covariate_rule"])
            kwargs["variance"] = (VarPower if v["type"] == "power" else VarExp)("_v")
    return formula, df, kwargs


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GlsResult]:
    m = MODELS[request.param]
    formula, df, kwargs = model_inputs(m)
    return m, ml.gls(formula, df, **kwargs)


def test_loglik_at_fixed_parameters(case: tuple[dict[str, Any], ml.GlsResult]) -> None:
    m, fit = case
    for ev in m["fixed_evaluations"]:
        u = np.concatenate([ev["corr_unconstrained"] or [], ev["var_unconstrained"] or []])
        prof = fit.objective.profile(u)
        assert prof.loglik == pytest.approx(ev["loglik"], rel=1e-10)
        assert prof.sigma == pytest.approx(ev["sigma"], rel=1e-10)
        np.testing.assert_allclose(prof.beta, ev["coefficients"], rtol=1e-9, atol=1e-10)


def test_optimum_matches_nlme(case: tuple[dict[str, Any], ml.GlsResult]) -> None:
    m, fit = case
    assert fit.converged
    assert fit.loglik >= m["loglik"] - 1e-7  # never worse than nlme
    assert fit.loglik == pytest.approx(m["loglik"], abs=1e-4)
    se = np.asarray(m["se"])
    assert np.all(np.abs(fit.params.to_numpy() - m["coefficients"]["values"]) <= 1e-3 * se)
    np.testing.assert_allclose(fit.bse, se, rtol=1e-3)
    assert fit.sigma == pytest.approx(m["sigma"], rel=1e-4)
    if m["correlation"]:
        np.testing.assert_allclose(fit.corr_params, m["correlation"]["params"]["values"], atol=2e-4)
    if m["variance"]:
        np.testing.assert_allclose(fit.variance_params, m["variance"]["params"]["values"], rtol=1e-3, atol=1e-4)
        assert list(fit.variance_params.index) == [str(n) for n in m["variance"]["params"]["names"]] \
            or m["variance"]["type"] != "ident"
    assert fit.df_model == m["loglik_df"]
    assert fit.aic == pytest.approx(m["aic"], abs=1e-3)
    assert fit.bic == pytest.approx(m["bic"], abs=1e-3)


def test_residuals_and_fitted_values(case: tuple[dict[str, Any], ml.GlsResult]) -> None:
    m, fit = case
    k = len(m["fitted_head"])
    np.testing.assert_allclose(fit.fitted().to_numpy()[:k], m["fitted_head"], rtol=1e-4)  # optimum to ~1e-5
    np.testing.assert_allclose(fit.resid("response").to_numpy()[:k], m["resid_head"], atol=2e-5 * m["sigma"])
    np.testing.assert_allclose(fit.resid("pearson").to_numpy()[:k], m["pearson_resid_head"], atol=1e-4)
    np.testing.assert_allclose(fit.resid("normalized").to_numpy()[:k], m["normalized_resid_head"], atol=1e-4)
    assert float((fit.resid("normalized") ** 2).sum()) == pytest.approx(m["normalized_resid_ss"], rel=1e-4)


def test_intervals(case: tuple[dict[str, Any], ml.GlsResult]) -> None:
    m, fit = case
    ours = fit.intervals()
    coef = m["intervals"]["coef"]
    width = np.asarray(coef["upper"]) - np.asarray(coef["lower"])
    assert np.all(np.abs(ours["coef"]["lower"].to_numpy() - coef["lower"]) <= 1e-3 * width)
    ref = m["intervals_accurate"] or m["intervals"]
    sig = ref["sigma"]
    sig_width = sig["upper"] - sig["lower"]
    assert abs(ours["sigma"]["lower"].iloc[0] - sig["lower"]) <= 2e-3 * sig_width
    assert abs(ours["sigma"]["upper"].iloc[0] - sig["upper"]) <= 2e-3 * sig_width
    for ours_key, ref_key in (("corr", "corr"), ("variance", "var")):
        if ref.get(ref_key):
            lo, hi = np.asarray(ref[ref_key]["lower"]), np.asarray(ref[ref_key]["upper"])
            tol = 2e-3 * (hi - lo)
            assert np.all(np.abs(ours[ours_key]["lower"].to_numpy() - lo) <= tol), ours_key
            assert np.all(np.abs(ours[ours_key]["upper"].to_numpy() - hi) <= tol), ours_key


@pytest.mark.parametrize("name", sorted(REFERENCE["lrt"]))
def test_likelihood_ratio_tests(name: str) -> None:
    ref = REFERENCE["lrt"][name]
    fits = []
    for model in ref["models"]:
        formula, df, kwargs = model_inputs(MODELS[model])
        fits.append(ml.gls(formula, df, **kwargs))
    table = ml.lrtest(*fits, refit=False)  # nlme's anova compares the fits as they are
    assert list(table["npar"]) == ref["df"]
    assert table["Chisq"].iloc[1] == pytest.approx(ref["l_ratio"], abs=1e-4)
    assert table["Pr(>Chisq)"].iloc[1] == pytest.approx(ref["p_value"], rel=1e-3)


def test_objective_is_the_one_the_design_builds() -> None:
    m = MODELS["orthodont_cs_varident_reml"]
    formula, df, kwargs = model_inputs(m)
    from multilevel.correlation import get_correlation

    structure = get_correlation(kwargs["corr"])
    design = gls_design(formula, df, groups=kwargs["groups"], time=None, structure=structure,
                        variance=get_variance(kwargs["variance"]))
    ev = m["fixed_evaluations"][0]
    u = np.concatenate([ev["corr_unconstrained"], ev["var_unconstrained"]])
    assert -GlsObjective(design, structure, reml=True)(u) == pytest.approx(ev["loglik"], rel=1e-10)


def test_converged_in_the_parameters(case: tuple[dict[str, Any], ml.GlsResult]) -> None:
    # BOBYQA stops on the log-likelihood; the Newton polish must end where the gradient vanishes. Without it
    # the corSymm fits end with gradients of 3e-4 to 9e-4 (2.5e-8 short in log-likelihood); the 1.5e-5 left
    # on sleepstudy varExp is the objective's rounding (its Newton step is below the noise).
    _, fit = case
    if fit.objective.nparams:
        assert fit.optsum.gradient is not None
        assert fit.optsum.max_abs_gradient < 5e-5, fit.optsum.gradient
