"""Kenward-Roger's adjusted covariance and df for lmm fits with a residual structure.

No R package computes Kenward-Roger for nlme's ``lme``; the reference is Kenward and Roger's (1997)
formulas written out with the dense n x n marginal covariance, built here from the fitted parameters
(not from the package's whitening), and its first and second derivatives by central differences in
``(D elements, sigma^2, residual parameters)`` -- the package's order.
"""

from __future__ import annotations

import numpy as np
import pytest
from multilevel import Fixed, VarIdent, VarPower, lmm
from multilevel.datasets import load_dataset
from multilevel.inference.kenward_roger import KenwardRoger, random_effects_matrix
from multilevel.lmm.theta import term_lambdas


def _residual_blocks(kind: str, fit, data) -> callable:
    """``S(rho)`` (n x n, sigma one) of the test's structures, written out from the data."""
    groups = fit.design.terms[0].codes  # the innermost factor: the residual groups
    same = groups[:, None] == groups[None, :]
    if kind in ("ar1", "weighted"):  # Orthodont in row order: positions 0..3 per subject
        pos = np.concatenate([np.arange(c) for c in np.bincount(groups)])[np.argsort(np.argsort(groups,
                                                                                                 kind="stable"))]
        lag = np.abs(pos[:, None] - pos[None, :])
        root = np.sqrt(data["age"].to_numpy() / 10.0) if kind == "weighted" else np.ones(len(pos))
        return lambda x: np.where(same, x[0] ** lag, 0.0) / np.outer(root, root)
    if kind == "varident":
        male = (data["Sex"].to_numpy() != data["Sex"].iloc[0]).astype(float)
        return lambda x: np.diag((1.0 + male * (x[0] - 1.0)) ** 2)
    t = data["Time"].to_numpy()
    lag = np.abs(t[:, None] - t[None, :])
    return lambda x: np.where(same, x[0] ** lag, 0.0) * np.outer(t ** x[1], t ** x[1])


def _dense_kenward_roger(fit, residual_cov, second_order: bool = True) -> KenwardRoger:
    """Kenward and Roger (1997), eq. (2)-(5), with n x n matrices and differenced derivatives."""
    design = fit.design
    Z, _ = random_effects_matrix(design.terms, design.nobs)
    Z = Z.toarray()
    X = np.asarray(design.X, dtype=float)
    lam = term_lambdas(design.terms, fit._theta)
    s2 = fit.sigma**2
    d_elements, layout = [], []
    for k, (t, lk) in enumerate(zip(design.terms, lam)):
        D = s2 * lk @ lk.T
        for c in range(t.p):
            for r in range(c, t.p):
                d_elements.append(D[r, c])
                layout.append((k, r, c))
    rho = np.concatenate([fit.corr_params, fit.variance_params.to_numpy()])
    x0 = np.concatenate([d_elements, [s2], rho])
    m = len(d_elements)

    def sigma_of(x: np.ndarray) -> np.ndarray:
        blocks = []
        for k, t in enumerate(design.terms):
            D = np.zeros((t.p, t.p))
            for v, (kk, r, c) in zip(x[:m], layout):
                if kk == k:
                    D[r, c] = D[c, r] = v
            blocks.append(np.kron(np.eye(t.nlevels), D))
        from scipy.linalg import block_diag

        return Z @ block_diag(*blocks) @ Z.T + x[m] * residual_cov(x[m + 1:])

    npar = x0.size
    h = 1e-5 * np.maximum(np.abs(x0), 1.0)
    e = np.eye(npar) * h
    first = [(sigma_of(x0 + e[i]) - sigma_of(x0 - e[i])) / (2 * h[i]) for i in range(npar)]
    base = sigma_of(x0)
    second = [[(sigma_of(x0 + e[i] + e[j]) - sigma_of(x0 + e[i] - e[j]) - sigma_of(x0 - e[i] + e[j])
                + sigma_of(x0 - e[i] - e[j])) / (4 * h[i] * h[j]) if i != j else
               (sigma_of(x0 + e[i]) - 2 * base + sigma_of(x0 - e[i])) / h[i] ** 2 for j in range(npar)]
              for i in range(npar)]
    inv = np.linalg.inv(base)
    phi = np.linalg.inv(X.T @ inv @ X)
    a = inv @ X
    ptilde = inv - a @ phi @ a.T
    P = np.array([-a.T @ f @ a for f in first])
    Q = np.array([[a.T @ fi @ inv @ fj @ a for fj in first] for fi in first])
    R = np.array([[a.T @ s @ a for s in row] for row in second])
    info = np.array([[0.5 * np.trace(ptilde @ fi @ ptilde @ fj) for fj in first] for fi in first])
    w = np.linalg.inv(info)
    u = sum(w[i, j] * (Q[i, j] - P[i] @ phi @ P[j] - 0.25 * second_order * R[i, j]) for i in range(npar) for j in range(npar))
    return KenwardRoger(vcov_beta=phi, vcov_adjusted=phi + 2 * phi @ u @ phi, p_matrices=P, w=w)


def _case(kind: str):
    if kind == "bodyweight":
        data = load_dataset("BodyWeight")
        fit = lmm("weight ~ Time + Diet + (Time | Rat)", data, corr="car1", time="Time",
                  variance=VarPower("Time"))
    else:
        data = load_dataset("Orthodont")
        if kind == "ar1":
            fit = lmm("distance ~ age + Sex + (1 | Subject)", data, corr="ar1")
        elif kind == "weighted":  # two nested factors (blocks of several subjects) and prior weights
            data = data.assign(w=data["age"] / 10.0)
            fit = lmm("distance ~ age + (1 | Subject) + (1 | Sex)", data, corr="ar1", weights="w")
        else:
            fit = lmm("distance ~ age + Sex + (age | Subject)", data, variance=VarIdent("Sex"))
    return fit, data


def _close(actual: np.ndarray, desired: np.ndarray, rtol: float) -> None:
    """Equal to ``rtol`` relative to the largest entry (entries that are zero up to rounding included)."""
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


@pytest.mark.parametrize("kind", ["ar1", "weighted", "varident", "bodyweight"])
def test_kenward_roger_matches_dense_formulas(kind: str) -> None:
    fit, data = _case(kind)
    ours = fit._kenward_roger()
    dense = _dense_kenward_roger(fit, _residual_blocks(kind, fit, data))
    _close(ours.vcov_beta, dense.vcov_beta, 1e-7)
    _close(ours.p_matrices, dense.p_matrices, 1e-5)
    _close(ours.w, dense.w, 1e-5)
    _close(ours.vcov_adjusted, dense.vcov_adjusted, 1e-6)
    p = len(fit.params)
    for L in list(np.eye(p)) + [np.eye(p)[1:]]:
        np.testing.assert_allclose(ours.contrast_ddf(L), dense.contrast_ddf(L), rtol=1e-5)


def test_second_derivative_term_matters() -> None:
    """The adjustment with R_ij differs from the one without (a mutant dropping it fails the dense test)."""
    fit, data = _case("ar1")
    ours = fit._kenward_roger()
    first_order = _dense_kenward_roger(fit, _residual_blocks("ar1", fit, data), second_order=False)
    change = np.abs(ours.vcov_adjusted - first_order.vcov_adjusted) / np.abs(first_order.vcov_adjusted).max()
    assert change.max() > 1e-3


def test_fixed_identity_reproduces_plain_kenward_roger() -> None:
    """A residual structure without parameters (Fixed identity) is today's pbkrtest-checked KR."""
    data = load_dataset("sleepstudy")
    plain = lmm("Reaction ~ Days + (Days | Subject)", data).with_ddf("kenward-roger")
    fixed = lmm("Reaction ~ Days + (Days | Subject)", data, corr=Fixed(np.eye(10)), time="Days").with_ddf("kr")
    np.testing.assert_allclose(fixed.cov_params().to_numpy(), plain.cov_params().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(fixed.df.to_numpy(), plain.df.to_numpy(), rtol=1e-6)


def test_residual_fit_tests_use_kenward_roger() -> None:
    fit, _ = _case("ar1")
    kr = fit.with_ddf("kenward-roger")
    table = kr.anova(ddf="kenward-roger")
    assert table.loc["Sex", "DenDF"] == pytest.approx(kr.df["Sex[T.Female]"], rel=1e-8)
    assert str(kr.summary()).count("Kenward-Roger") >= 1
    with pytest.raises(ValueError, match="REML"):
        lmm("distance ~ age + (1 | Subject)", load_dataset("Orthodont"), corr="ar1", reml=False).with_ddf("kr")


def test_sparse_block_algebra_matches_dense(monkeypatch) -> None:
    """Blocks above DENSE_BLOCK_ROWS (crossed factors) take the sparse route; both give the same numbers."""
    import multilevel.inference.kenward_roger as kr_module

    fit, _ = _case("weighted")
    dense_route = fit._kenward_roger()
    monkeypatch.setattr(kr_module, "DENSE_BLOCK_ROWS", 0)
    sparse_route = fit._kenward_roger()
    _close(sparse_route.vcov_adjusted, dense_route.vcov_adjusted, 1e-12)
    _close(sparse_route.w, dense_route.w, 1e-12)
