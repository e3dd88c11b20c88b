"""GLMMs with an observation-level random effect against lme4's glmer
(tests/reference/glmm_obslevel.json, made by glmm_obslevel_reference.R).

An observation-level term (one level per row, ``(1 | obs)``) models
overdispersion. A linear mixed model must refuse it (it is confounded with
the residual variance); a GLMM has no residual variance, and glmer accepts as
many random effects per term as rows (``allow.n = TRUE``). The fixture's
objective at fixed (theta, beta) is glmm_reimpl.R's (PIRLS to convergence;
lme4's devfun at a tight tolerance agrees to 1e-9); ours must agree to 1e-8
(measured: 5e-12). At the optimum our log-likelihood is never worse than
lme4's by more than 1e-6 relative (it is better by 8e-6 and 2e-5) and matches
the exact optimum (Newton steps on that objective) to 1e-6 relative (measured
5e-11); coefficients within 1e-3 standard errors (8e-5), theta to 1e-4
relative (2e-5), standard errors to 1e-3 (8e-6).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.datasets import load_dataset
from multilevel.glmm import fit_glmm_design
from multilevel.lmm.design import LmmDesign, RandomTerm, check_term_sizes, without_residual_variance
from test_glmm_reference import model_inputs

REFERENCE = json.loads((Path(__file__).parent / "reference" / "glmm_obslevel.json").read_text())
MODELS = REFERENCE["models"]


def obslevel_inputs(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Our formula, data and keywords; cbpp gets its observation-level factor as glmm_obslevel_reference.R."""
    formula, df, kwargs = model_inputs(m)
    if m["dataset"] == "cbpp":
        df = df.assign(obs=np.arange(1, len(df) + 1))
    return formula, df, kwargs


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GlmmResult]:
    m = MODELS[request.param]
    formula, df, kwargs = obslevel_inputs(m)
    return m, ml.glmm(formula, df, **kwargs)


def test_the_design_has_one_level_per_row(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    assert fit.nobs == m["nobs"]
    assert fit.ngroups == m["ngroups"]
    assert max(fit.ngroups.values()) == fit.nobs
    assert list(fit.theta.index.str.split(".").str[0]) == [n.split(".")[0] for n in m["theta_names"]]


def test_objective_at_fixed_parameters(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    try:
        for check in m["objective_checks"]:
            ours = fit._objective(np.concatenate([check["theta"], check["beta"]]))
            assert ours + m["saturated_constant"] == pytest.approx(check["objective"], rel=1e-8), check["label"]
    finally:
        fit._objective.state(fit._theta, fit._beta)  # leave PIRLS at the optimum


def test_optimum_is_never_worse_than_lme4_and_matches_the_exact_one(
        case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    exact = m["exact_optimum"]
    assert fit.converged
    assert fit.df_model == m["loglik_df"]
    assert fit.loglik >= m["loglik"] - 1e-6 * abs(m["loglik"])
    assert fit.loglik == pytest.approx(exact["loglik"], rel=1e-6)
    assert fit.deviance == pytest.approx(-2.0 * exact["loglik"], rel=1e-6)
    se = np.asarray(exact["fixef_se"])
    worst = np.max(np.abs(fit.params.to_numpy() - exact["beta"]) / se)
    assert worst <= 1e-3, f"coefficients {worst:.2g} standard errors from the exact optimum"
    np.testing.assert_allclose(fit.theta.to_numpy(), exact["theta"], rtol=1e-4)
    np.testing.assert_allclose(fit.bse.to_numpy(), se, rtol=1e-3)
    np.testing.assert_allclose(fit.bse.to_numpy(), m["fixef_se"], rtol=2e-3)  # lme4's, at its estimates


def test_observation_level_modes_and_condvar(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    _, fit = case
    group = max(fit.ngroups, key=fit.ngroups.get)
    assert fit.ranef[group].shape == (fit.nobs, 1)
    full = fit.ranef_condvar(full=True)[group]
    assert full.shape == (fit.nobs, 1, 1)
    assert np.all(full > 0)
    np.testing.assert_allclose(full[:, 0, 0], fit.ranef_condvar()[group].to_numpy()[:, 0], rtol=1e-12)


def test_raw_height_fit_is_not_worse_than_lme4s_and_has_the_centred_slope_se() -> None:
    # lme4's help-page model: glmer warns that it failed to converge (max|grad| 0.003) with the
    # uncentred HEIGHT; the model is the centred one reparametrized, so the slope and its SE are the same.
    raw = REFERENCE["grouseticks_raw_height"]
    centred = MODELS["grouseticks"]["exact_optimum"]
    fit = ml.glmm("TICKS ~ YEAR + HEIGHT + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", load_dataset("grouseticks"),
                  family="poisson")
    assert fit.converged
    assert fit.loglik >= raw["loglik"] - 1e-6 * abs(raw["loglik"])
    assert fit.loglik == pytest.approx(centred["loglik"], rel=1e-6)
    assert fit.params["HEIGHT"] == pytest.approx(centred["beta"][3], abs=1e-3 * centred["fixef_se"][3])
    assert fit.bse["HEIGHT"] == pytest.approx(centred["fixef_se"][3], rel=1e-3)


def test_lmm_refuses_an_observation_level_term() -> None:
    sleep = load_dataset("sleepstudy").assign(obs=lambda d: np.arange(len(d)))
    with pytest.raises(ValueError, match=r"\(Intercept \| obs\) has 180 random effects and there are 180 obs"):
        ml.lmm("Reaction ~ Days + (1 | obs)", sleep)


def test_glmm_refuses_more_random_effects_than_rows() -> None:
    cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"], obs=lambda d: np.arange(len(d)),
                                       t=lambda d: d.period.cat.codes.astype(float))
    with pytest.raises(ValueError, match=r"\(Intercept \+ t \| obs\) has 112 random effects but there are only 56"):
        ml.glmm("p ~ t + (1 | herd) + (t | obs)", cbpp, family="binomial", weights="size")


def test_array_level_designs_need_the_block_without_a_residual_variance() -> None:
    n = 40
    rng = np.random.default_rng(3)
    y = rng.poisson(np.exp(1.0 + rng.normal(0.0, 0.5, 5)[np.arange(n) % 5] + rng.normal(0.0, 0.6, n))).astype(float)
    terms = [RandomTerm(np.arange(n), np.ones((n, 1)), "obs", ["Intercept"]),
             RandomTerm(np.arange(n) % 5, np.ones((n, 1)), "g", ["Intercept"])]
    with pytest.raises(ValueError, match="40 random effects and there are 40 observations"):
        LmmDesign(y, np.ones((n, 1)), ["Intercept"], terms)
    with without_residual_variance():
        design = LmmDesign(y, np.ones((n, 1)), ["Intercept"], terms)
    with pytest.raises(ValueError, match="residual variance"):  # outside the block the LMM's check is back
        check_term_sizes(design.terms, n)
    fit = fit_glmm_design(design, "poisson")
    assert np.all(np.isfinite(fit.params)) and fit.ngroups == {"obs": n, "g": 5}


def test_the_block_does_not_leak() -> None:
    obs = [RandomTerm(np.arange(6), np.ones((6, 1)), "obs", ["Intercept"])]
    with without_residual_variance():
        check_term_sizes(obs, 6)
        check_term_sizes(obs, 6, residual=False)
        with pytest.raises(ValueError, match="residual variance"):
            check_term_sizes(obs, 6, residual=True)
    with pytest.raises(ValueError, match="residual variance"):
        check_term_sizes(obs, 6)
