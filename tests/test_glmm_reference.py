"""multilevel.glmm against lme4's glmer and glmmTMB (tests/reference/glmm.json,
made by glmm_reference.R; definitions in GLMM_DEFINITIONS.md).

lme4's default PIRLS stops early, so its objective is slightly inexact; the
fixture carries the exact objective at fixed parameters and the exact optimum
(PIRLS to convergence, Newton steps), which glmmTMB confirms. Objectives at
fixed parameters are compared to 1e-8; at the optimum our log-likelihood is
never worse than the better of glmer and glmmTMB by more than 1e-3 (in fact
to 1e-5 of the exact optimum).
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

REFERENCE = json.loads((Path(__file__).parent / "reference" / "glmm.json").read_text())
MODELS = REFERENCE["models"]


def model_inputs(m: dict[str, Any]) -> tuple[str, pd.DataFrame, dict[str, Any]]:
    """Our formula, data and keyword arguments for a fixture model."""
    df = load_dataset(m["dataset"])
    lhs, rhs = (part.strip() for part in m["formula"].split("~", 1))
    kwargs: dict[str, Any] = {"family": m["family"], "link": m["link"], "nagq": m["nagq"]}
    if lhs.startswith("cbind("):  # cbind(incidence, size - incidence): proportions with trials as weights
        df = df.assign(_y=df["incidence"] / df["size"])
        kwargs["weights"] = "size"
    elif lhs in ("r2", "use"):  # Bernoulli: the second factor level is a success
        df = df.assign(_y=(df[lhs] == df[lhs].cat.categories[1]).astype(float))
    else:
        df = df.assign(_y=df.eval(lhs))
    if m["weights"]:
        kwargs["weights"] = m["weights"]
    if m["offset"]:
        df = df.assign(_off=np.log(df.eval(m["offset"].removeprefix("log(").removesuffix(")"))))
        kwargs["offset"] = "_off"
    return "_y ~ " + rhs.replace("^", "**"), df, kwargs


@pytest.fixture(scope="module", params=sorted(MODELS))
def case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], ml.GlmmResult]:
    m = MODELS[request.param]
    formula, df, kwargs = model_inputs(m)
    return m, ml.glmm(formula, df, **kwargs)


def test_objective_at_fixed_parameters(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    constant = m["saturated_constant"] if m["nagq"] <= 1 else 0.0  # lme4's AGQ scale leaves it out
    for check in m["objective_checks"]:
        ours = fit._objective(np.concatenate([check["theta"], check["beta"]]))
        assert ours + constant == pytest.approx(check["objective"], rel=1e-8), check["label"]
    fit._objective.state(fit._theta, fit._beta)


def test_optimum_matches_the_exact_one_and_is_never_worse_than_the_peers(
        case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    exact = m["exact_optimum"]
    assert fit.converged
    best_peer = max([m["loglik_full"]] + ([m["glmmtmb"]["loglik"]] if m["glmmtmb"] else []))
    assert fit.loglik >= best_peer - 1e-3
    assert fit.loglik == pytest.approx(exact["loglik_full"], abs=1e-5)
    se = np.asarray(exact["fixef_se"])
    assert np.all(np.abs(fit.params.to_numpy() - exact["beta"]) <= 0.02 * se)
    np.testing.assert_allclose(fit.bse, se, rtol=2e-3)
    np.testing.assert_allclose(fit.theta, exact["theta"], atol=2e-3)
    assert fit.df_model == m["loglik_df"]
    if m["nagq"] <= 1:
        assert fit.aic == pytest.approx(m["aic"], abs=2e-3)


def test_conditional_modes_variances_and_fitted_values(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    exact = m["exact_optimum"]
    for factor, ref in exact["ranef"].items():
        ours = fit.ranef[factor].iloc[: len(ref["values"])].to_numpy()
        np.testing.assert_allclose(ours, ref["values"], atol=2e-3)
        condvar = fit.ranef_condvar()[factor].iloc[: len(ref["condvar"])].to_numpy()
        np.testing.assert_allclose(condvar, ref["condvar"], rtol=5e-3, atol=1e-6)
    head = np.asarray(exact["fitted_head"])
    np.testing.assert_allclose(fit.fitted().to_numpy()[: head.size], head, rtol=1e-3, atol=1e-6)


def test_residual_kinds(case: tuple[dict[str, Any], ml.GlmmResult]) -> None:
    m, fit = case
    for kind in ("deviance", "pearson", "response"):
        ref = np.asarray(m[f"resid_{kind}_head"])
        np.testing.assert_allclose(fit.resid(kind).to_numpy()[: ref.size], ref, rtol=2e-3, atol=2e-4)
