"""multilevel.glmm on generated data and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import multilevel as ml
from multilevel.datasets import load_dataset


def logistic_groups(n_groups: int = 60, size: int = 15, sd: float = 0.8, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), size)
    x = rng.normal(size=g.size)
    b = rng.normal(scale=sd, size=n_groups)
    y = (rng.random(g.size) < expit(-0.3 + 0.8 * x + b[g])).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def cbpp() -> pd.DataFrame:
    return load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])


def test_nagq0_stops_after_the_first_stage_and_laplace_improves_on_it() -> None:
    df = logistic_groups()
    stage1 = ml.glmm("y ~ x + (1 | g)", df, nagq=0)
    laplace = ml.glmm("y ~ x + (1 | g)", df)
    assert stage1.nagq == 0 and laplace.nagq == 1
    assert laplace.loglik >= stage1.loglik - 1e-8


def test_quadrature_approaches_its_limit() -> None:
    fits = [ml.glmm("p ~ period + (1 | herd)", cbpp(), weights="size", nagq=k) for k in (5, 15, 25)]
    assert abs(fits[2].loglik - fits[1].loglik) < abs(fits[1].loglik - fits[0].loglik) + 1e-9
    assert abs(fits[2].loglik - fits[1].loglik) < 1e-4


def test_prediction_on_both_scales_with_new_levels() -> None:
    df = logistic_groups()
    fit = ml.glmm("y ~ x + (1 | g)", df)
    np.testing.assert_allclose(fit.predict(df), fit.fitted(), rtol=1e-10)
    new = pd.DataFrame({"x": [0.0, 0.0], "g": ["g3", "unseen"]})
    with pytest.raises(ValueError, match="allow_new_levels=True"):
        fit.predict(new)
    link = fit.predict(new, scale="link", allow_new_levels=True)
    assert link.iloc[1] == pytest.approx(fit.params["Intercept"])
    assert link.iloc[0] == pytest.approx(fit.params["Intercept"] + fit.ranef["g"].loc["g3", "Intercept"])
    np.testing.assert_allclose(fit.predict(new, allow_new_levels=True), expit(link.to_numpy()))
    assert np.all(fit.predict(new, re=False, scale="link") == fit.params["Intercept"])


def test_summary_and_accessors() -> None:
    fit = ml.glmm("p ~ period + (1 | herd)", cbpp(), weights="size")
    text = str(fit.summary())
    for piece in ("Laplace", "binomial (logit)", "herd", "z value", "logLik"):
        assert piece in text
    assert "Residual" not in text and list(fit.varcorr["group"]) == ["herd"]
    assert fit.zvalues.equals(fit.tvalues)
    assert set(fit.cov_params("conditional").index) == set(fit.params.index)
    with pytest.raises(ValueError, match="latent scale"):
        fit.icc()


def test_poisson_with_offset_is_equivariant_in_the_offset() -> None:
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(40), 8)
    exposure = rng.uniform(1, 4, g.size)
    y = rng.poisson(exposure * np.exp(0.2 + rng.normal(scale=0.5, size=40)[g]))
    df = pd.DataFrame({"y": y, "logt": np.log(exposure), "g": g})
    fit = ml.glmm("y ~ 1 + (1 | g)", df, family="poisson", offset="logt")
    shifted = ml.glmm("y ~ 1 + (1 | g)", df.assign(logt=df["logt"] + 1.0), family="poisson", offset="logt")
    assert shifted.params["Intercept"] == pytest.approx(fit.params["Intercept"] - 1.0, abs=1e-5)
    assert shifted.loglik == pytest.approx(fit.loglik, abs=1e-6)


def test_singular_fit_is_reported() -> None:
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"g": np.repeat(np.arange(30), 10), "x": rng.normal(size=300)})
    df["y"] = (rng.random(300) < expit(0.5 * df["x"])).astype(float)  # no group effect at all
    with pytest.warns(ml.SingularFitWarning):
        fit = ml.glmm("y ~ x + (1 | g)", df)
    assert fit.singular and "singular: True" in str(fit.summary())


def test_separation_gets_a_clear_message() -> None:
    df = logistic_groups(n_groups=20, size=10)
    df["y"] = (df["x"] > 0).astype(float)  # x separates the outcome perfectly
    with pytest.raises(ml.PirlsError, match="separation"):
        ml.glmm("y ~ x + (1 | g)", df)


def test_missing_values_dropped_and_counted() -> None:
    df = logistic_groups()
    df.loc[[1, 4, 9], "x"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 3 of 900 rows"):
        fit = ml.glmm("y ~ x + (1 | g)", df)
    assert fit.nobs == 897


@pytest.mark.parametrize("kwargs,match", [
    ({"nagq": 5, "formula": "y ~ x + (1 + x | g)"}, r"nagq = 5 .* single scalar random-effect term"),
    ({"family": "gaussian"}, "glmm supports the binomial, poisson, gamma and negative_binomial families"),
    ({"family": "negative_binomial", "nagq": 5}, "nagq > 1 is not available for the negative_binomial family"),
    ({"family": "negative_binomial", "mutate": "half"}, "outside the support of the negative_binomial family"),
    ({"family": "gamma", "link": "inverse"}, "glmm fits the gamma family with the log link"),
    ({"family": "poisson", "link": "logit"}, "link 'logit' is not available for the poisson"),
    ({"nagq": -1}, "nagq must be a non-negative integer"),
    ({"mutate": "two"}, r"response 'y' has 1 value\(s\) outside the support of the binomial"),
])
def test_bad_input(kwargs: dict, match: str) -> None:
    df = logistic_groups()
    mutate = kwargs.pop("mutate", None)
    if mutate == "two":
        df.loc[7, "y"] = 2.0
    if mutate == "half":
        df.loc[7, "y"] = 0.5
    if kwargs.get("family") == "gamma":
        df["y"] = df["y"] + 1.0
    formula = kwargs.pop("formula", "y ~ x + (1 | g)")
    with pytest.raises(ValueError, match=match):
        ml.glmm(formula, df, **kwargs)


def test_crossed_terms_fit_through_the_sparse_core() -> None:
    rng = np.random.default_rng(8)
    n = 2000
    a, b = rng.integers(0, 40, n), rng.integers(0, 25, n)
    eta = -0.2 + rng.normal(scale=0.6, size=40)[a] + rng.normal(scale=0.4, size=25)[b]
    df = pd.DataFrame({"y": (rng.random(n) < expit(eta)).astype(float), "a": a, "b": b})
    fit = ml.glmm("y ~ 1 + (1 | a) + (1 | b)", df)
    assert fit.converged and fit.theta.shape == (2,)
    assert 0.3 < fit.theta.iloc[0] < 1.0 and 0.1 < fit.theta.iloc[1] < 0.8
