"""multilevel.gee on generated data: the whole pipeline against a direct
numpy implementation of the estimating equations, row order, covariance
kinds, tests, prediction and residuals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special

import multilevel as ml
from multilevel.correlation import Ar1, Exchangeable, Fixed, Independence, MDependent, Unstructured


def clustered_binary(n_clusters: int = 60, seed: int = 3) -> pd.DataFrame:
    """Unequal clusters (1..6 rows) at positions with gaps, rows shuffled."""
    rng = np.random.default_rng(seed)
    rows = []
    for j in range(n_clusters):
        size = rng.integers(1, 7)
        times = np.sort(rng.choice(8, size=size, replace=False))
        u = rng.normal(scale=0.8)
        for t in times:
            x = rng.normal()
            rows.append((f"c{j}", int(t), x, rng.random() < special.expit(-0.2 + 0.7 * x + 0.1 * t + u)))
    df = pd.DataFrame(rows, columns=["id", "t", "x", "y"]).astype({"y": float})
    return df.sample(frac=1.0, random_state=1).reset_index(drop=True)


def reference_gee(df: pd.DataFrame, corr: str, tol: float = 1e-12) -> dict:
    """Binomial-logit GEE solved directly: per-cluster dense R_j and geepack's moment equations
    (phi = mean r^2; alpha solving sum over all pairs E (r_i r_k / phi - rho_ik(alpha)) = 0)."""
    X = np.column_stack([np.ones(len(df)), df["x"], df["t"]])
    y = df["y"].to_numpy()
    clusters = [np.flatnonzero(df["id"].to_numpy() == c) for c in pd.unique(df["id"])]
    clusters = [idx[np.argsort(df["t"].to_numpy()[idx])] for idx in clusters]
    t = df["t"].to_numpy()
    beta = np.zeros(3)
    for _ in range(200):
        mu = special.expit(X @ beta)
        v = mu * (1 - mu)
        r = (y - mu) / np.sqrt(v)
        phi = r @ r / len(y)
        pairs = [(r[i] * r[k], abs(t[i] - t[k])) for idx in clusters for a, i in enumerate(idx) for k in idx[a + 1:]]
        z = np.array([p for p, _ in pairs]) / phi
        d = np.array([lag for _, lag in pairs])
        if corr == "exchangeable":
            alpha = z.mean()
        else:
            alpha = optimize.brentq(lambda a: np.sum(d * a ** (d - 1) * (z - a**d)), -0.99, 0.99, xtol=1e-15)
        H = np.zeros((3, 3))
        U = np.zeros(3)
        M = np.zeros((3, 3))
        for idx in clusters:
            ti = t[idx]
            R = alpha ** np.abs(ti[:, None] - ti[None, :]) if corr == "ar1" else \
                np.where(np.eye(len(idx)) == 1, 1.0, alpha)
            A = np.sqrt(phi * v[idx])
            Vinv = np.linalg.inv(A[:, None] * R * A[None, :])
            D = (v[idx])[:, None] * X[idx]
            H += D.T @ Vinv @ D
            uj = D.T @ Vinv @ (y[idx] - mu[idx])
            U += uj
            M += np.outer(uj, uj)
        step = np.linalg.solve(H, U)
        beta = beta + step
        if np.max(np.abs(step)) < tol:
            break
    Hinv = np.linalg.inv(H)
    return {"beta": beta, "phi": phi, "alpha": alpha, "robust": Hinv @ M @ Hinv, "naive": Hinv}


@pytest.mark.parametrize("corr", ["exchangeable", "ar1"])
def test_gee_matches_direct_solution(corr: str) -> None:
    df = clustered_binary()
    fit = ml.gee("y ~ x + t", df, groups="id", time="t", family="binomial", corr=corr)
    ref = reference_gee(df, corr)
    assert fit.converged
    # The reference estimates alpha and phi before its last step; ours after: both at the fixed point.
    np.testing.assert_allclose(fit.params.to_numpy(), ref["beta"], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fit.corr_params[0], ref["alpha"], rtol=1e-6)
    np.testing.assert_allclose(fit.scale, ref["phi"], rtol=1e-7)
    np.testing.assert_allclose(fit.cov_params("robust").to_numpy(), ref["robust"], rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(fit.cov_params("naive").to_numpy(), ref["naive"], rtol=1e-6, atol=1e-12)


def test_row_order_does_not_matter_and_outputs_follow_the_callers_rows() -> None:
    df = clustered_binary()
    shuffled = df.sample(frac=1.0, random_state=7)
    a = ml.gee("y ~ x + t", df, groups="id", time="t", family="binomial", corr="ar1")
    b = ml.gee("y ~ x + t", shuffled, groups="id", time="t", family="binomial", corr="ar1")
    np.testing.assert_allclose(a.params, b.params, rtol=1e-10)
    np.testing.assert_allclose(a.bse, b.bse, rtol=1e-8)
    assert list(b.fitted().index) == list(shuffled.index)
    np.testing.assert_allclose(b.fitted().sort_index(), a.fitted().sort_index(), rtol=1e-10)


def test_without_time_the_row_order_within_a_cluster_is_the_position() -> None:
    df = clustered_binary().sort_values(["id", "t"])
    with_time = ml.gee("y ~ x", df, groups="id", time="t", family="binomial", corr=MDependent(1))
    dense_positions = df.groupby("id").cumcount()
    without = ml.gee("y ~ x", df.assign(rank=dense_positions), groups="id", time="rank",
                     family="binomial", corr=MDependent(1))
    implicit = ml.gee("y ~ x", df, groups="id", family="binomial", corr=MDependent(1))
    np.testing.assert_allclose(without.params, implicit.params, rtol=1e-10)
    assert not np.allclose(with_time.params, implicit.params, rtol=1e-6)  # gaps change the lags


def test_structures_that_reduce_to_each_other_agree() -> None:
    df = clustered_binary()
    ar1 = ml.gee("y ~ x", df, groups="id", time="t", family="binomial", corr=Ar1())
    fixed = ml.gee("y ~ x", df, groups="id", time="t", family="binomial",
                   corr=Fixed(Ar1().table(ar1.corr_params, 8)))
    # Same R_j: the same estimating equations at the same alpha, up to alpha's update.
    np.testing.assert_allclose(fixed.params, ar1.params, rtol=1e-5)
    indep = ml.gee("y ~ x", df, groups="id", family="binomial", corr=Independence())
    eye = ml.gee("y ~ x", df, groups="id", time="t", family="binomial", corr=Fixed(np.eye(8)))
    np.testing.assert_allclose(indep.params, eye.params, rtol=1e-10)
    np.testing.assert_allclose(indep.bse, eye.bse, rtol=1e-10)


def test_unstructured_parameters_are_the_lower_triangle_by_column() -> None:
    rng = np.random.default_rng(5)
    n, T = 400, 4
    corr = np.array([[1.0, 0.6, 0.4, 0.3], [0.6, 1.0, 0.5, 0.2], [0.4, 0.5, 1.0, 0.7], [0.3, 0.2, 0.7, 1.0]])
    u = rng.normal(size=(n, T)) @ np.linalg.cholesky(corr).T
    df = pd.DataFrame({"id": np.repeat(np.arange(n), T), "t": np.tile(np.arange(T), n),
                       "y": (1 + u).ravel()})
    fit = ml.gee("y ~ 1", df, groups="id", time="t", corr=Unstructured())
    assert fit.corr_params.shape == (T * (T - 1) // 2,)
    r = fit.resid("pearson").to_numpy().reshape(n, T) / np.sqrt(fit.scale)
    expect = [(r[:, s] * r[:, t]).mean() for s in range(T) for t in range(s + 1, T)]
    np.testing.assert_allclose(fit.corr_params, expect, rtol=1e-8)
    assert fit.summary().correlation_table()["Parameter"].tolist()[1:] == \
        ["alpha.1:2", "alpha.1:3", "alpha.1:4", "alpha.2:3", "alpha.2:4", "alpha.3:4"]


def test_independence_estimates_are_the_glm_maximum_likelihood() -> None:
    rng = np.random.default_rng(11)
    n = 500
    x = rng.normal(size=n)
    df = pd.DataFrame({"id": np.arange(n) // 5, "x": x, "y": rng.gamma(2.0, np.exp(0.5 + 0.3 * x) / 2.0)})
    fit = ml.gee("y ~ x", df, groups="id", family="gamma", link="log")
    mu = fit.fitted().to_numpy()
    X = np.column_stack([np.ones(n), x])
    score = X.T @ ((df["y"] - mu) / mu)  # log link, v = mu^2: D'V^-1(y - mu) = X'(y - mu)/mu
    assert np.max(np.abs(score)) < 1e-8
    # Fixing the scale changes only the naive covariance.
    fixed = ml.gee("y ~ x", df, groups="id", family="gamma", link="log", scale=1.0)
    np.testing.assert_allclose(fixed.params, fit.params, rtol=1e-10)
    np.testing.assert_allclose(fixed.cov_params("robust"), fit.cov_params("robust"), rtol=1e-8)
    np.testing.assert_allclose(fixed.cov_params("naive") * fit.scale, fit.cov_params("naive"), rtol=1e-8)


@pytest.mark.parametrize("family,link", [
    ("gaussian", "identity"), ("gaussian", "log"), ("binomial", "probit"), ("binomial", "cloglog"),
    ("poisson", "sqrt"), ("poisson", "identity"), ("gamma", "inverse"), ("gamma", "identity"),
    ("inverse_gaussian", "1/mu^2"), ("inverse_gaussian", "log"),
])
def test_every_family_and_link_fits_and_solves_its_score(family: str, link: str) -> None:
    rng = np.random.default_rng(2)
    n = 600
    x = rng.uniform(0.5, 1.5, size=n)
    mu = {"binomial": special.expit(x - 1), "inverse_gaussian": 1.0 + x}.get(family, 2.0 + x)
    y = {"gaussian": mu + rng.normal(scale=0.3, size=n), "binomial": (rng.random(n) < mu).astype(float),
         "poisson": rng.poisson(mu).astype(float), "gamma": rng.gamma(4.0, mu / 4.0),
         "inverse_gaussian": rng.wald(mu, 8.0)}[family]
    df = pd.DataFrame({"id": np.arange(n) // 4, "x": x, "y": y})
    fit = ml.gee("y ~ x", df, groups="id", family=family, link=link, corr="exchangeable")
    assert fit.converged and np.all(np.isfinite(fit.bse))
    assert fit.family.link.name == link


def test_binomial_proportions_with_trial_weights_equal_the_expanded_binary_data() -> None:
    rng = np.random.default_rng(4)
    groups = pd.DataFrame({"id": np.repeat(np.arange(40), 3), "x": rng.normal(size=120),
                           "n": rng.integers(1, 6, size=120)})
    groups["k"] = rng.binomial(groups["n"], special.expit(0.3 * groups["x"]))
    groups["p"] = groups["k"] / groups["n"]
    fit = ml.gee("p ~ x", groups, groups="id", family="binomial", weights="n", scale=1.0)
    expanded = groups.loc[groups.index.repeat(groups["n"])].copy()
    expanded["y"] = np.concatenate([np.r_[np.ones(k), np.zeros(n - k)] for k, n in zip(groups["k"], groups["n"])])
    binary = ml.gee("y ~ x", expanded, groups="id", family="binomial", scale=1.0)
    np.testing.assert_allclose(fit.params, binary.params, rtol=1e-8)
    np.testing.assert_allclose(fit.cov_params("naive"), binary.cov_params("naive"), rtol=1e-8)


def test_offset_shifts_the_linear_predictor() -> None:
    rng = np.random.default_rng(8)
    n = 300
    df = pd.DataFrame({"id": np.arange(n) // 3, "x": rng.normal(size=n), "logt": np.log(rng.uniform(1, 5, n))})
    df["y"] = rng.poisson(np.exp(0.2 + 0.4 * df["x"] + df["logt"]))
    fit = ml.gee("y ~ x", df, groups="id", family="poisson", offset="logt", corr="exchangeable")
    np.testing.assert_allclose(fit.predict(df), fit.fitted(), rtol=1e-12)
    np.testing.assert_allclose(fit.predict(df, which="linear") - df["logt"], fit.predict(df.assign(logt=0.0),
                               which="linear"), rtol=1e-12)


def test_covariance_kinds_switch_without_refitting() -> None:
    fit = ml.gee("y ~ x + t", clustered_binary(), groups="id", time="t", family="binomial", corr="exchangeable")
    assert fit.cov_type == "robust"
    naive = fit.with_cov_type("naive")
    assert naive.params is fit.params and naive.cov_type == "naive" and fit.cov_type == "robust"
    np.testing.assert_allclose(naive.bse, np.sqrt(np.diag(fit.cov_params("naive"))))
    for kind in ("bias_reduced", "jackknife"):
        cov = fit.cov_params(kind).to_numpy()
        assert np.all(np.linalg.eigvalsh(cov) > 0)
    # Mancl-DeRouen inflates the sandwich (leverages shrink residuals).
    assert np.all(np.diag(fit.cov_params("bias_reduced")) > np.diag(fit.cov_params("robust")))
    with pytest.raises(ValueError, match="cov_type"):
        fit.with_cov_type("sandwich")


def test_wald_tests_of_terms_coefficients_and_contrasts() -> None:
    df = clustered_binary().assign(f=lambda d: np.where(d["x"] > 0, "hi", np.where(d["x"] < -1, "lo", "mid")))
    fit = ml.gee("y ~ t + C(f)", df, groups="id", family="binomial", corr="exchangeable")
    term = fit.wald_test("C(f)")
    assert term.df == 2 and term.names == ("C(f)[T.lo]", "C(f)[T.mid]")
    single = fit.wald_test("t")
    assert single.statistic == pytest.approx(fit.zvalues["t"] ** 2, rel=1e-10)
    L = np.zeros((2, len(fit.params)))
    L[0, 2], L[1, 3] = 1.0, 1.0
    assert fit.wald_test(L).statistic == pytest.approx(term.statistic, rel=1e-10)
    table = fit.anova()
    assert list(table.index) == ["t", "C(f)"]
    assert table.loc["C(f)", "X2"] == pytest.approx(term.statistic)
    with pytest.raises(ValueError, match="neither a term"):
        fit.wald_test("nope")


def test_qic_identities() -> None:
    fit = ml.gee("y ~ x + t", clustered_binary(), groups="id", time="t", family="binomial", corr="ar1")
    q = fit.qic()
    assert q["QIC"] == pytest.approx(-2 * q["Quasi Lik"] + 2 * q["CIC"])
    assert q["QICu"] == pytest.approx(-2 * q["Quasi Lik"] + 2 * 3)
    mu = fit.fitted().to_numpy()
    y = clustered_binary()["y"].to_numpy()
    assert q["Quasi Lik"] == pytest.approx(np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu)))
    # Under independence the robust and naive covariances of the same fit enter: CIC = tr(naive^-1 robust).
    indep = ml.gee("y ~ x + t", clustered_binary(), groups="id", family="binomial")
    cic = np.trace(np.linalg.solve(indep.cov_params("naive"), indep.cov_params("robust")))
    assert indep.qic()["CIC"] == pytest.approx(cic, rel=1e-8)


def test_residual_kinds_and_summary_text() -> None:
    df = clustered_binary()
    fit = ml.gee("y ~ x", df, groups="id", family="binomial", corr="exchangeable")
    mu = fit.fitted()
    np.testing.assert_allclose(fit.resid("response"), df["y"] - mu)
    np.testing.assert_allclose(fit.resid("pearson"), (df["y"] - mu) / np.sqrt(mu * (1 - mu)))
    np.testing.assert_allclose(fit.resid("working"), (df["y"] - mu) / (mu * (1 - mu)))
    text = str(fit.summary())
    for piece in ("binomial", "logit", "exchangeable", "robust", "alpha", "scale (phi)", "converged: True"):
        assert piece in text
    assert "<table" in fit._repr_html_()


def test_clusters_of_size_one_and_a_single_row_cluster_structure() -> None:
    rng = np.random.default_rng(9)
    df = pd.DataFrame({"id": np.arange(200), "x": rng.normal(size=200)})
    df["y"] = 1 + df["x"] + rng.normal(size=200)
    fit = ml.gee("y ~ x", df, groups="id", corr=Exchangeable())
    ols = np.linalg.lstsq(np.column_stack([np.ones(200), df["x"]]), df["y"], rcond=None)[0]
    np.testing.assert_allclose(fit.params, ols, rtol=1e-10)
    assert fit.corr_params[0] == 0.0  # no pairs: nothing to estimate


def test_the_core_result_does_not_depend_on_the_thread_count() -> None:
    df = clustered_binary(n_clusters=3000, seed=12)
    try:
        ml.set_num_threads(1)
        one = ml.gee("y ~ x + t", df, groups="id", time="t", family="binomial", corr="ar1")
        ml.set_num_threads(2)
        two = ml.gee("y ~ x + t", df, groups="id", time="t", family="binomial", corr="ar1")
    finally:
        ml.set_num_threads(None)
    assert np.array_equal(one.params.to_numpy(), two.params.to_numpy())
    assert np.array_equal(one.cov_params().to_numpy(), two.cov_params().to_numpy())


def test_ar1_moment_estimate_stays_a_correlation_on_simulated_data() -> None:
    # 10 clusters of 12 with a random intercept: geepack's Newton solve of the AR(1) moment equation
    # leaves (-1, 1) on about one data set in six; the estimate must stay a correlation and the fit converge.
    import warnings

    alphas = []
    for seed in range(60):
        rng = np.random.default_rng(seed)
        g = np.repeat(np.arange(10), 12)
        x = rng.normal(size=120)
        df = pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(size=10)[g] + rng.normal(size=120), "x": x, "g": g,
                           "t": np.tile(np.arange(12), 10)})
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fit = ml.gee("y ~ x", df, groups="g", time="t", corr="ar1")
        assert fit.converged and -1 < fit.corr_params[0] < 1
        alphas.append(fit.corr_params[0])
    assert 0.3 < np.median(alphas) < 0.95  # positive serial correlation from the shared intercept


def test_cluster_layout_groups_rows_by_the_core_counting_sort():
    from multilevel.clusters import cluster_layout

    lay = cluster_layout(np.array([2, 0, 2, 1, 0]), 3)
    assert lay.ptr.tolist() == [0, 2, 3, 5] and lay.order.tolist() == [1, 4, 3, 0, 2]
    assert lay.position.tolist() == [0, 0, 1, 0, 1]
    with pytest.raises(ValueError, match="level code 3 at row 1 is outside"):
        cluster_layout(np.array([0, 3]), 2)


def test_correlation_basis_refuses_positions_it_cannot_use():
    from multilevel import _core

    x, a, e = np.ones((3, 1)), np.ones(3), np.ones(3)
    order, ptr = np.arange(3, dtype=np.int32), np.array([0, 3], dtype=np.int64)
    with pytest.raises(ValueError, match="positions must increase"):  # an error, not an abort in the threads
        _core.correlation_basis(x, a, e, order, ptr, np.array([0, 2, 1], dtype=np.int32), 2)
    with pytest.raises(ValueError, match="0..62"):
        _core.correlation_basis(x, a, e, order, ptr, np.array([0, 1, 63], dtype=np.int32), 3)
