"""Inference after lmm fits with residual correlation and variance functions.

Reference: tests/reference/lme_inference.json (lme_inference_reference.R):
clubSandwich 0.5's ``vcovCR`` (CR0, CR1, CR2) of nlme ``lme`` fits with
corAR1, corCAR1, varIdent and varPower, its Satterthwaite df and HTZ test;
emmeans' ``appx-satterthwaite`` df. Satterthwaite's df are also checked
against the same recipe written out densely (the marginal covariance
``sigma^2 (Z Lambda Lambda' Z' + G R G)`` as an n x n matrix and numerical
derivatives in every variance parameter), which emmeans only approximates.
"""

from __future__ import annotations

import json
import pathlib
import warnings

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.lmm.theta import term_lambdas
from multilevel.numdiff import richardson_hessian, richardson_jacobian
from test_lmm_residual import REF, arguments, case_data

INFERENCE = json.loads((pathlib.Path(__file__).parent / "reference" / "lme_inference.json").read_text())
KEYS = list(INFERENCE["cases"])


@pytest.fixture(scope="module")
def fits() -> dict:
    out = {}
    for key in KEYS:
        case = REF["cases"][key]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the gaps case is (nearly) singular
            out[key] = ml.lmm(case["ours"]["formula"], case_data(case["data"]), reml=case["reml"], **arguments(case))
    return out


@pytest.mark.parametrize("kind", ["CR0", "CR1", "CR2"])
@pytest.mark.parametrize("key", KEYS)
def test_cluster_robust_matches_clubsandwich(fits, key, kind):
    ref = INFERENCE["cases"][key]["cr"][kind]
    robust = fits[key].with_cov_type(kind)
    p = len(robust.params)
    want = np.asarray(ref["vcov"]).reshape(p, p, order="F")
    # clubSandwich works at nlme's optimum, ours at ours (within 1e-3 in the parameters): 1e-6 relative.
    np.testing.assert_allclose(robust.cov_params().to_numpy(), want, rtol=1e-6, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(robust.df.to_numpy(), ref["df"], rtol=1e-5)
    wald = robust.ftest(np.eye(p)[1:]).iloc[0]
    assert wald["F value"] == pytest.approx(ref["htz_f"], rel=1e-5)
    assert wald["DenDF"] == pytest.approx(ref["htz_df"], rel=1e-5)


def dense_z(design) -> np.ndarray:
    """Z (n, q) of a design's terms, written out."""
    blocks = []
    for t in design.terms:
        z = np.asarray(t.z, dtype=float).reshape(design.nobs, t.p)
        full = np.zeros((design.nobs, t.nlevels * t.p))
        for c in range(t.p):
            full[np.arange(design.nobs), t.codes * t.p + c] = z[:, c]
        blocks.append(full)
    return np.hstack(blocks)


def dense_satterthwaite_df(fit) -> np.ndarray:
    """Satterthwaite's df of each coefficient from the n x n marginal covariance, in (theta, u, sigma)."""
    d = fit.design
    Z, X, y = dense_z(d), np.asarray(d.X, dtype=float), d.response_minus_offset()
    n, p = X.shape
    rows = np.arange(n)
    k, m = fit._theta.size, fit.residual_u.size

    def parts(phi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lam = term_lambdas(d.terms, phi[:k])
        D = np.zeros((Z.shape[1], Z.shape[1]))
        start = 0
        for t, la in zip(d.terms, lam):
            size = t.nlevels * t.p
            D[start:start + size, start:start + size] = np.kron(np.eye(t.nlevels), la @ la.T)
            start += size
        V = phi[-1] ** 2 * (Z @ D @ Z.T + fit.residual.covariance(phi[k:k + m], 1.0, rows))
        Vi = np.linalg.inv(V)
        return V, Vi

    def deviance(phi: np.ndarray) -> float:
        V, Vi = parts(phi)
        A = X.T @ Vi @ X
        r = y - X @ np.linalg.solve(A, X.T @ Vi @ y)
        dev = np.linalg.slogdet(V)[1] + r @ Vi @ r + (n - p if fit.reml else n) * np.log(2 * np.pi)
        return float(dev + (np.linalg.slogdet(A)[1] if fit.reml else 0.0))

    def cov_beta(phi: np.ndarray) -> np.ndarray:
        _, Vi = parts(phi)
        return np.linalg.inv(X.T @ Vi @ X)

    phi = np.concatenate([fit._theta, fit.residual_u, [fit.sigma]])
    vcov_varpar = 2.0 * np.linalg.inv(richardson_hessian(deviance, phi, step=1e-3))
    jac = richardson_jacobian(cov_beta, phi, step=1e-3)
    cov = cov_beta(phi)
    out = []
    for e in np.eye(p):
        g = np.einsum("i,kij,j->k", e, jac, e)
        out.append(2.0 * (e @ cov @ e) ** 2 / (g @ vcov_varpar @ g))
    return np.array(out)


@pytest.mark.parametrize("key", ["ovary_ar1_reml", "orthodont_ident", "bodyweight_car1_power"])
def test_satterthwaite_df_match_the_dense_recipe(fits, key):
    fit = fits[key].with_ddf("satterthwaite")
    np.testing.assert_allclose(fit.df.to_numpy(), dense_satterthwaite_df(fits[key]), rtol=1e-4)


@pytest.mark.parametrize("key", KEYS)
def test_satterthwaite_df_near_emmeans(fits, key):
    ref = INFERENCE["cases"][key]["satterthwaite_df"]
    fit = fits[key].with_ddf("satterthwaite")
    # emmeans differences V by refitting with nudged parameters and uses nlme's finite-difference apVar.
    np.testing.assert_allclose(fit.df.to_numpy(), ref, rtol=0.08)


def test_ddf_choices_with_a_residual_structure(fits):
    fit = fits["ovary_ar1_reml"]
    kr = fit.with_ddf("kenward-roger")  # checked against the dense formulas in test_lmm_residual_kr.py
    assert np.all(np.isfinite(kr.df.to_numpy()) & (kr.df.to_numpy() > 0))
    table = fit.with_ddf("satterthwaite").coef_table()
    assert list(table.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    anova = fit.anova()
    assert np.isfinite(anova["DenDF"]).all()
    case = REF["cases"]["ovary_ar1_reml"]
    direct = ml.lmm(case["ours"]["formula"], case_data(case["data"]), ddf="satterthwaite", **arguments(case))
    np.testing.assert_allclose(direct.df.to_numpy(), fit.with_ddf("satterthwaite").df.to_numpy(), rtol=1e-8)


def test_residual_draws_have_the_fitted_covariance(fits):
    """Each pattern's factor, scaled by the sd factors, rebuilds sigma^-2 Var(e_j) of its residual groups."""
    from multilevel.lmm.residual import ResidualNoise

    fit = fits["bodyweight_car1_power"]
    noise = ResidualNoise(fit.residual, fit.residual_u)
    assert sum(rows.size for _, rows in noise.patterns) == fit.nobs
    for factor, rows in noise.patterns:
        for group in rows:
            want = fit.residual.covariance(fit.residual_u, 1.0, group)
            got = np.outer(noise.g[group], noise.g[group]) * (factor @ factor.T)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_bootstrap_of_a_residual_fit(fits):
    fit = fits["ovary_ar1_reml"]
    boot = fit.bootstrap(60, seed=3)
    assert list(boot.replicates.columns) == ["sd_(Intercept)|Mare", "sigma", "alpha", *fit.params.index]
    assert boot.converged.all()
    # The replicates' spread of the fixed effects is the model's standard error (60 draws: within 30%),
    # and of the correlation its own: a simulator that dropped the AR(1) would centre alpha near zero.
    spread = boot.replicates[list(fit.params.index)].std()
    np.testing.assert_allclose(spread.to_numpy(), fit.bse.to_numpy(), rtol=0.3)
    assert abs(boot.replicates["alpha"].mean() - fit.corr_params[0]) < 0.1
    again = fit.bootstrap(60, seed=3)
    pd.testing.assert_frame_equal(again.replicates, boot.replicates)


OVARY = "follicles ~ np.sin(2 * np.pi * Time) + np.cos(2 * np.pi * Time) + (1 | Mare)"


def test_profile_bounds_are_where_the_deviance_rises_by_the_quantile():
    """At each 95% bound of alpha and of a fixed effect, the ML fit with that parameter held there (a Fixed
    AR(1) matrix; the effect moved into the offset) is 1.96^2 worse in deviance than the optimum."""
    from scipy import stats

    df = ml.load_dataset("Ovary")
    fit = ml.lmm(OVARY, df, corr="ar1")
    ci = fit.conf_int(method="profile")
    ml_fit = ml.lmm(OVARY, df, corr="ar1", reml=False)
    target = stats.chi2.ppf(0.95, 1)
    lags = np.abs(np.subtract.outer(np.arange(40), np.arange(40)))
    for bound in ci.loc["alpha"]:
        held = ml.lmm(OVARY, df, corr=ml.Fixed(bound ** lags), reml=False)
        assert 2 * (ml_fit.loglik - held.loglik) == pytest.approx(target, rel=1e-5)
    sin = np.sin(2 * np.pi * df["Time"].to_numpy())
    for bound in ci.loc["np.sin(2 * np.pi * Time)"]:
        held = ml.lmm("follicles ~ np.cos(2 * np.pi * Time) + (1 | Mare)", df, corr="ar1", reml=False,
                      offset=bound * sin)
        assert 2 * (ml_fit.loglik - held.loglik) == pytest.approx(target, rel=1e-5)
    assert list(ci.index[:3]) == ["sd_(Intercept)|Mare", "sigma", "alpha"]


def test_likelihood_ratio_refit_keeps_the_residual_structure():
    """anova refits REML fits by ML: the residual structure must come along (nlme's ML fit of the model)."""
    df = ml.load_dataset("Ovary")
    ar1 = ml.lmm(OVARY, df, corr="ar1")
    plain = ml.lmm(OVARY, df)
    with pytest.warns(UserWarning, match="refitting"):
        table = ml.anova(plain, ar1)
    assert table["logLik"].iloc[1] == pytest.approx(REF["cases"]["ovary_ar1_ml"]["loglik"], abs=1e-6)
    assert table["Df"].iloc[1] == 1
