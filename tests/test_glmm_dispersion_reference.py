"""multilevel.glmm with a dispersion parameter (negative binomial NB2, Gamma with a log link)
against glmmTMB (tests/reference/glmm_dispersion.json, made by glmm_dispersion_reference.R;
conventions in GLMM_DISPERSION.md): exact Laplace with the observed information.

Our parameters: ``theta`` = the random-intercept SD, ``dispersion`` = the NB shape ``k``
(glmmTMB's ``sigma``) or the Gamma ``phi`` (glmmTMB's ``sigma`` squared).
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

REFERENCE = json.loads((Path(__file__).parent / "reference" / "glmm_dispersion.json").read_text())
MODELS = REFERENCE["models"]


def model_inputs(m: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, Any]]:
    if m["dataset"] == "epil":
        df = load_dataset("epil")
        df = df.assign(off=np.log(df["base"] / 4))
    elif m["dataset"] == "dietox":
        df = load_dataset("dietox")
    else:
        sim = REFERENCE["datasets"]["nbsim"]
        df = pd.DataFrame({"group": sim["group"], "x": sim["x"], "y": sim["y"]})
    kwargs: dict[str, Any] = {"family": "negative_binomial" if m["family"] == "nbinom2" else "gamma"}
    if m["offset"]:
        kwargs["offset"] = "off"
    return df, kwargs


def our_dispersion(m: dict[str, Any], value: float) -> float:
    """glmmTMB's sigma in our convention: NB shape k as is, Gamma phi = sigma^2."""
    return value if m["family"] == "nbinom2" else value**2


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GlmmResult]:
    m = MODELS[request.param]
    df, kwargs = model_inputs(m)
    return m, ml.glmm(m["formula"], df, **kwargs)


def test_objective_at_fixed_parameters(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    for point in m["objective_points"]:
        nat = point["natural"]
        params = np.concatenate([[nat["re_sd"]], nat["beta"], [np.log(our_dispersion(m, nat["dispersion"]))]])
        assert fit._objective(params) == pytest.approx(2 * point["tmb_fn"], rel=1e-9), point["label"]
    fit._objective(np.concatenate([fit._theta, fit._beta, fit._log_dispersion]))


def test_optimum_matches_glmmtmb(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    assert fit.converged
    assert fit.loglik >= m["loglik"] - 1e-6
    assert fit.loglik == pytest.approx(m["loglik"], abs=1e-4)
    se = np.asarray(m["fixef_se"])
    assert np.all(np.abs(fit.params.to_numpy() - m["fixef"]["values"]) <= 0.01 * se)
    np.testing.assert_allclose(fit.bse, se, rtol=2e-3)
    assert fit.theta.iloc[0] == pytest.approx(m["re_sd"], rel=2e-3)
    assert fit.dispersion == pytest.approx(our_dispersion(m, m["dispersion"]["glmmtmb_sigma"]), rel=2e-3)
    assert fit.df_model == m["df"]
    assert fit.aic == pytest.approx(m["aic"], abs=1e-3)


def test_conditional_modes_and_fitted_values(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    modes = m["conditional_modes"]
    ours = next(iter(fit.ranef.values())).iloc[: len(modes["values"]), 0].to_numpy()
    np.testing.assert_allclose(ours, modes["values"], atol=2e-3 * m["re_sd"] + 1e-6)
    head = np.asarray(m["fitted_head"])
    np.testing.assert_allclose(fit.fitted().to_numpy()[: head.size], head, rtol=1e-3)


def test_parameters_match_the_polished_optimum(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    # BOBYQA stops on the deviance: its end left beta 1e-5 to 3.5e-5 SE from the polished optimum (TMB's
    # optimum refined to a gradient of 1e-10); the Newton polish converges in the parameters.
    m, fit = case
    best = m["polished_optimum"]
    beta = np.asarray(list(best["fixef"].values()) if isinstance(best["fixef"], dict) else best["fixef"])
    np.testing.assert_allclose((fit.params.to_numpy() - beta) / fit.bse.to_numpy(), 0.0, atol=1e-6)
    assert fit.theta.iloc[0] == pytest.approx(best["re_sd"], rel=1e-6)
    assert fit.dispersion == pytest.approx(our_dispersion(m, best["dispersion"]), rel=1e-6)
    assert fit.loglik >= best["loglik"] - 1e-9 * abs(best["loglik"])
