"""multilevel.gls on generated data and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.datasets import load_dataset


def ar1_panel(n_subjects: int = 200, n_times: int = 6, phi: float = 0.5, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    e = np.empty((n_subjects, n_times))
    e[:, 0] = rng.normal(size=n_subjects)
    for t in range(1, n_times):
        e[:, t] = phi * e[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=n_subjects)
    df = pd.DataFrame({"id": np.repeat(np.arange(n_subjects), n_times), "t": np.tile(np.arange(n_times), n_subjects),
                       "trt": np.repeat(rng.integers(0, 2, n_subjects), n_times)})
    df["y"] = 1 + 0.5 * df["t"] + 0.3 * df["trt"] + e.ravel()
    return df


def dense_loglik(df: pd.DataFrame, phi: float, reml: bool) -> float:
    """Profiled (restricted) log-likelihood with dense per-subject AR(1) matrices."""
    X = np.column_stack([np.ones(len(df)), df["t"], df["trt"]])
    y = df["y"].to_numpy()
    H = np.zeros((3, 3))
    U = np.zeros(3)
    yy = logdet = 0.0
    for _, idx in df.groupby("id").indices.items():
        t = df["t"].to_numpy()[idx]
        R = phi ** np.abs(t[:, None] - t[None, :])
        Ri = np.linalg.inv(R)
        H += X[idx].T @ Ri @ X[idx]
        U += X[idx].T @ Ri @ y[idx]
        yy += y[idx] @ Ri @ y[idx]
        logdet += np.linalg.slogdet(R)[1]
    beta = np.linalg.solve(H, U)
    rss = yy - U @ beta
    n = len(y) - (3 if reml else 0)
    ll = -0.5 * n * (np.log(2 * np.pi * rss / n) + 1) - 0.5 * logdet
    return ll - 0.5 * np.linalg.slogdet(H)[1] if reml else ll


@pytest.mark.parametrize("reml", [True, False])
def test_ar1_with_gaps_and_shuffled_rows_matches_dense_algebra(reml: bool) -> None:
    df = ar1_panel()
    df = df[(df["id"] + df["t"]) % 4 != 1].sample(frac=1.0, random_state=3)  # gaps, interleaved rows
    fit = ml.gls("y ~ t + trt", df, groups="id", time="t", corr="ar1", method="REML" if reml else "ML")
    assert fit.converged
    assert fit.loglik == pytest.approx(dense_loglik(df, float(fit.corr_params[0]), reml), rel=1e-10)
    assert 0.35 < fit.corr_params[0] < 0.65
    assert list(fit.fitted().index) == list(df.index)


def test_single_series_without_groups() -> None:
    df = ar1_panel(n_subjects=1, n_times=400, phi=0.7, seed=4)
    fit = ml.gls("y ~ t", df, corr="ar1")
    assert 0.55 < fit.corr_params[0] < 0.85
    assert fit.design.layout.nclusters == 1


def test_robust_covariance_and_prediction() -> None:
    df = ar1_panel()
    wrong = ml.gls("y ~ t + trt", df, groups="id")  # independence, but the errors are AR(1)
    assert np.all(np.diag(wrong.cov_params("robust")) > 0)
    assert wrong.cov_params("robust").loc["t", "t"] != pytest.approx(wrong.cov_params().loc["t", "t"], rel=0.05)
    new = pd.DataFrame({"t": [0.0, 5.0], "trt": [1, 0]})
    expected = wrong.params["Intercept"] + wrong.params["t"] * new["t"] + wrong.params["trt"] * new["trt"]
    np.testing.assert_allclose(wrong.predict(new), expected)


def test_banded_and_fixed_structures() -> None:
    df = ar1_panel(phi=0.6)
    banded = ml.gls("y ~ t + trt", df, groups="id", time="t", corr=ml.MDependent(2))
    assert banded.corr_params.shape == (2,) and banded.corr_params[0] > banded.corr_params[1] > 0
    ar1 = ml.gls("y ~ t + trt", df, groups="id", time="t", corr="ar1")
    fixed = ml.gls("y ~ t + trt", df, groups="id", time="t", corr=ml.Fixed(ml.Ar1().table(ar1.corr_params, 6)))
    assert fixed.loglik == pytest.approx(ar1.loglik, rel=1e-10)
    np.testing.assert_allclose(fixed.params, ar1.params, rtol=1e-8)


def test_summary_and_intervals_text() -> None:
    fit = ml.gls("distance ~ age * Sex", load_dataset("Orthodont"), groups="Subject", corr="exchangeable",
                 variance=ml.VarIdent("Sex"))
    text = str(fit.summary())
    for piece in ("REML", "exchangeable", "Female", "sigma", "converged: True"):
        assert piece in text
    iv = fit.intervals()
    assert set(iv) == {"coef", "corr", "variance", "sigma"}
    assert "<table" in fit._repr_html_()


def test_missing_values_are_dropped_and_counted() -> None:
    df = ar1_panel()
    df.loc[[2, 5], "y"] = np.nan
    with pytest.warns(UserWarning, match=r"dropped 2 of 1200 rows .*'y': 2"):
        fit = ml.gls("y ~ t", df, groups="id", time="t", corr="ar1")
    assert fit.nobs == 1198


@pytest.mark.parametrize("kwargs,match", [
    ({"groups": "id", "time": "t", "corr": "ar1", "mutate": "dup"}, r"cluster 0 has two rows at the same time"),
    ({"groups": "id", "time": "tf", "corr": "ar1", "mutate": "frac"}, r"time column 'tf': .*integer-valued"),
    ({"groups": "id", "corr": "car1"}, "car1 correlation needs time="),
    ({"groups": "id", "corr": "ar2"}, "unknown correlation structure 'ar2'"),
    ({"groups": "g2"}, "column 'g2' used in groups= is not in the data"),
    ({"groups": "id", "variance": ml.VarPower("z"), "mutate": "zero"}, r"VarPower\('z'\): the covariate is 0 at row"),
    ({"groups": "id", "variance": ml.VarIdent("trt"), "mutate": "onelevel"}, "VarIdent.*at least two levels"),
    ({"groups": "id", "method": "MLE"}, "method must be 'REML' or 'ML'"),
    ({"corr": "unstructured"}, "largest cluster has 1200 rows"),
])
def test_bad_input_errors(kwargs: dict, match: str) -> None:
    df = ar1_panel()
    mutate = kwargs.pop("mutate", None)
    if mutate == "dup":
        df.loc[1, "t"] = 0
    if mutate == "frac":
        df["tf"] = df["t"] + 0.5
    if mutate == "zero":
        df["z"] = df["t"].astype(float)
    if mutate == "onelevel":
        df["trt"] = 1
    with pytest.raises(ValueError, match=match):
        ml.gls("y ~ t", df, **kwargs)


def test_lrtest_refuses_incomparable_fits() -> None:
    df = ar1_panel()
    a = ml.gls("y ~ t", df, groups="id", time="t", corr="ar1")
    b = ml.gls("y ~ t + trt", df, groups="id", time="t", corr="ar1")
    with pytest.raises(ValueError, match="models with different fixed effects are not comparable"):
        ml.lrtest(a, b, refit=False)
    c = ml.gls("y ~ t", df, groups="id", time="t", corr="ar1", method="ML")
    with pytest.raises(ValueError, match="cannot compare REML fits with ML fits"):
        ml.lrtest(a, c, refit=False)
    with pytest.warns(UserWarning, match="refitting"):
        assert ml.lrtest(a, b).loc["fit1", "Df"] == 1  # refitted by ML, as lme4 does
