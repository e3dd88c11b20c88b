"""multilevel.anova against lme4's anova() (tests/reference/anova_reference.R -> anova.json)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.datasets import load_dataset

REFERENCE = json.loads((Path(__file__).parent / "reference" / "anova.json").read_text())["comparisons"]


def fit_model(model: dict, data: pd.DataFrame):
    if model["family"] == "gaussian":
        return multilevel.lmm(model["formula"], data, reml=model["reml"])
    return multilevel.glmm(model["formula"], data, family="binomial", weights="size")


def dataset(name: str) -> pd.DataFrame:
    data = load_dataset(name)
    return data.assign(p=data["incidence"] / data["size"]) if name == "cbpp" else data


@pytest.mark.parametrize("key", sorted(REFERENCE))
def test_anova_matches_lme4(key):
    ref = REFERENCE[key]
    data = dataset(ref["dataset"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fits = [fit_model(m, data) for m in ref["models"]]
        table = multilevel.anova(*fits, refit=ref["refit"])
    # lme4 names the models MODEL1.. in the order given; ours are fit0..
    expected_order = [f"fit{int(name[5:]) - 1}" for name in ref["rownames"]]
    assert list(table.index) == expected_order
    want = {c: np.array([np.nan if v is None else v for v in vals], dtype=float) for c, vals in ref["table"].items()}
    np.testing.assert_array_equal(table["npar"], want["npar"])
    np.testing.assert_array_equal(table["Df"], want["Df"])
    # Optima: ours never worse than lme4's. LMMs agree to 1e-6; glmer's PIRLS stops early, so its
    # log-likelihoods are up to 3e-4 below the exact optimum (docs/how-it-works.md, Correctness), and so are its tables.
    assert np.all(table["logLik"].to_numpy() >= want["logLik"] - 1e-6)
    close = {"rtol": 1e-8, "atol": 1e-5} if ref["models"][0]["family"] == "gaussian" else {"rtol": 0, "atol": 1e-3}
    for col in ("logLik", "AIC", "BIC", "deviance", "Chisq"):
        np.testing.assert_allclose(table[col], want[col], **close, err_msg=col)
    np.testing.assert_allclose(table["Pr(>Chisq)"], want["Pr(>Chisq)"], rtol=1e-3 if close["atol"] == 1e-3 else 1e-5)


def test_anova_refuses_what_cannot_be_compared():
    sleep = load_dataset("sleepstudy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = multilevel.lmm("Reaction ~ 1 + (Days | Subject)", sleep)
        b = multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep)
        c = multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep.iloc[:170])
        d = multilevel.lmm("Days ~ 1 + (1 | Subject)", sleep.assign(Days=sleep["Days"] + 0.5))
    with pytest.raises(ValueError, match="not comparable; use refit=True"):
        multilevel.anova(a, b, refit=False)
    with pytest.raises(ValueError, match="different numbers of rows"):
        multilevel.anova(b, c)
    with pytest.raises(ValueError, match="different responses"):
        multilevel.anova(a, d)
    with pytest.raises(ValueError, match="at least two"):
        multilevel.anova(a)
    with pytest.raises(TypeError, match="lmm, glmm and gls"):
        multilevel.anova(a, "b")
    with pytest.warns(UserWarning, match="refitting model\\(s\\) with ML"):
        table = multilevel.anova(a, b)
    assert a.reml and b.reml  # the fits themselves are unchanged
    with pytest.warns(UserWarning, match="not nested"):
        multilevel.anova(b, b)
    assert table.loc["fit1", "Df"] == 1


def test_anova_of_gls_fits():
    orth = load_dataset("Orthodont")
    ind = multilevel.gls("distance ~ age * Sex", orth, groups="Subject", method="ML")
    cs = multilevel.gls("distance ~ age * Sex", orth, groups="Subject", corr="exchangeable", method="ML")
    table = multilevel.anova(ind, cs)
    assert multilevel.lrtest is multilevel.anova
    assert table.loc["fit1", "Chisq"] == pytest.approx(2 * (cs.loglik - ind.loglik), rel=1e-12)
    assert table.loc["fit1", "Df"] == cs.df_model - ind.df_model == 1
    assert table.equals(ind.compare(cs))
