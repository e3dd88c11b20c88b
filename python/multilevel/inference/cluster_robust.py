"""Cluster-robust (sandwich) covariance of linear mixed models, as clubSandwich's ``vcovCR``.

With clusters ``j`` (the outermost grouping factor by default), the model's
relative marginal covariance ``Theta_j = Z_j Lambda Lambda' Z_j' + W_j^-1`` (with a residual
correlation structure or variance function ``G_j R_j G_j`` in place of ``W_j^-1``),
``M = (sum_j X_j' Theta_j^-1 X_j)^-1`` and the marginal residuals
``r_j = y_j - X_j beta``:

    cov = M (sum_j E_j r_j r_j' E_j') M,   E_j = X_j' Theta_j^-1 A_j

with ``A_j = I`` (CR0), ``sqrt(J / (J - 1)) I`` (CR1) or Bell and McCaffrey's
``A_j = U_j' (U_j (Theta_j - X_j M X_j') U_j')^-1/2 U_j`` (CR2, ``U_j'U_j = Theta_j``).
Tests use clubSandwich's Satterthwaite df (one coefficient) and its HTZ
Hotelling test (several), computed from p x p summaries per cluster
(clubSandwich forms J x J arrays; nothing here grows with J^2).
The work per cluster is dense in its rows: O(sum n_j^3).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.inference.ddf import FTest

CR_KINDS = ("CR0", "CR1", "CR2")


def _sym_power(a: np.ndarray, power: float, tol: float = 1e-12) -> np.ndarray:
    """``a^power`` of a symmetric matrix, zero on eigenvalues below ``tol`` (clubSandwich's ``matrix_power``)."""
    vals, vecs = np.linalg.eigh(0.5 * (a + a.T))
    scaled = np.where(vals > tol, np.abs(vals) ** power, 0.0)
    return (vecs * scaled) @ vecs.T


@dataclass(frozen=True)
class ClusterRobust:
    """A cluster-robust covariance and what its small-sample tests need.

    Attributes
    ----------
    kind : "CR0", "CR1" or "CR2"
    cluster : name of the clustering
    nclusters : J
    cov : (p, p) the sandwich covariance
    h : (J, p, p) per cluster ``M E_j X_j chol(M)``
    gram : (J, p, p) per cluster ``M E_j Theta_j E_j' M``
    """

    kind: str
    cluster: str
    nclusters: int
    cov: np.ndarray
    h: np.ndarray
    gram: np.ndarray
    name: str = "cluster-robust"

    def _omega(self, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The constraint's H (J, q, p) and Gram (J, q, q) terms and Omega (q, q), the trace of P."""
        h = np.einsum("sp,jpk->jsk", c, self.h)
        g = np.einsum("sp,jpk,tk->jst", c, self.gram, c)
        omega = g.sum(axis=0) - np.einsum("jsk,jtk->st", h, h)
        return h, g, omega

    @staticmethod
    def _variance_terms(h: np.ndarray, g: np.ndarray) -> np.ndarray:
        """clubSandwich's ``sum_kl B[s,t,k,l] B[t,s,k,l] + B[s,s,k,l] B[t,t,k,l]`` with
        ``B[s,t] = -H_s'H_t + diag_k(g_k[s,t])``, from p x p products only."""
        q = h.shape[1]
        cross = np.einsum("jsk,jtk->stj", h, h)  # (H_s'H_t)_kk: per cluster k, the diagonal
        prod = np.einsum("jsa,jtb->stab", h, h)  # H_s H_t' summed over clusters: (q, q, p, p)
        out = np.zeros((q, q))
        gk = np.moveaxis(g, 0, -1)  # (q, q, J)
        for s in range(q):
            for t in range(s + 1):
                # With A_st = H_s'H_t (J x J): tr(A_st A_st) = tr(Q Q), Q = H_t H_s' (p x p);
                # tr(A_ss A_tt) = ||H_s H_t'||_F^2.
                q_ts = prod[t, s]
                first = np.sum(q_ts * q_ts.T) - 2.0 * np.sum(cross[s, t] * gk[s, t]) + np.sum(gk[s, t] ** 2)
                second = (np.sum(prod[s, t] ** 2) - np.sum(cross[s, s] * gk[t, t])
                          - np.sum(cross[t, t] * gk[s, s]) + np.sum(gk[s, s] * gk[t, t]))
                out[s, t] = out[t, s] = first + second
        return out

    def contrast_df(self, contrast: np.ndarray) -> float:
        """clubSandwich's Satterthwaite df of one contrast (``coef_test``): ``2 E^2 / V``."""
        c = np.atleast_2d(np.asarray(contrast, dtype=float))
        h, g, omega = self._omega(c)
        var = self._variance_terms(h, g)[0, 0]  # equals sum(P^2) + ... ; V = 2 sum(P^2) = var for q = 1
        return float(2.0 * omega[0, 0] ** 2 / var)

    def f_test(self, L: np.ndarray, beta: np.ndarray, sigma: float) -> FTest:
        """clubSandwich's HTZ test (``Wald_test(test = "HTZ")``) of ``L beta = 0``; one row: t^2 on
        its Satterthwaite df. Sums of squares are not defined for a sandwich covariance (NaN)."""
        q = L.shape[0]
        lb = L @ beta
        wald = float(lb @ np.linalg.solve(L @ self.cov @ L.T, lb))
        if q == 1:
            den_df = self.contrast_df(L[0])
            return FTest(np.nan, np.nan, 1.0, den_df, wald, float(stats.f.sf(wald, 1, den_df)))
        _, _, omega = self._omega(L)
        whitened = _sym_power(omega, -0.5) @ L
        h, g, _ = self._omega(whitened)
        nu = q * (q + 1) / np.sum(self._variance_terms(h, g))
        delta = max((nu - q + 1) / nu, 0.0)
        den_df = nu - q + 1
        f_value = delta * wald / q
        p = float(stats.f.sf(f_value, q, den_df)) if den_df > 0 else np.nan
        return FTest(sum_sq=np.nan, mean_sq=np.nan, num_df=float(q), den_df=float(den_df), f_value=f_value, p_value=p)


def cluster_codes(result: Any, cluster: Any) -> tuple[np.ndarray, str]:
    """Integer cluster codes per row: the outermost grouping factor, a named one, or given labels."""
    terms = result.design.terms
    if cluster is None:
        outer = min(terms, key=lambda t: t.nlevels)  # clubSandwich's get_outer_group: fewest levels
        return np.asarray(outer.codes), outer.group
    if isinstance(cluster, str):
        for t in terms:
            if t.group == cluster:
                return np.asarray(t.codes), cluster
        raise ValueError(f"cluster={cluster!r} is not a grouping factor of the model "
                         f"({[t.group for t in terms]}); pass one of them or an array of labels per row")
    labels = np.asarray(cluster)
    if labels.shape != (result.nobs,):
        raise ValueError(f"cluster has {labels.size} labels; the fit has {result.nobs} rows")
    return pd.factorize(labels)[0], "cluster"


def _check_nested(terms: list[Any], codes: np.ndarray, name: str) -> None:
    for t in terms:
        pairs = pd.DataFrame({"level": t.codes, "cluster": codes}).drop_duplicates()
        if pairs["level"].duplicated().any():
            raise ValueError(f"the grouping factor {t.group!r} is not nested in the clusters {name!r} (a level "
                             "appears in several clusters); cluster-robust errors need nested random effects, "
                             "as clubSandwich's: cluster by an outer factor")


def cluster_robust(result: Any, kind: str, cluster: Any = None) -> ClusterRobust:
    """The cluster-robust covariance of an in-memory LMM fit (see the module notes).

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> cr = cluster_robust(fit, "CR2")
    >>> cr.nclusters, round(cr.contrast_df([0.0, 1.0]), 3)
    (18, 17.0)
    """
    from multilevel.errors import require_rows
    from multilevel.lmm.theta import term_lambdas

    if kind not in CR_KINDS:
        raise ValueError(f"unknown cov_type {kind!r}; choose 'model' or one of {list(CR_KINDS)}")
    d = result.design
    require_rows(d, "cluster-robust standard errors", "fit the rows in memory")
    codes, name = cluster_codes(result, cluster)
    _check_nested(d.terms, codes, name)
    nclusters = int(codes.max()) + 1
    if nclusters < 2:
        raise ValueError("cluster-robust standard errors need at least two clusters")
    X = np.asarray(d.X, dtype=float)
    resid = d.response_minus_offset() - X @ result._beta
    lambdas = term_lambdas(d.terms, result._theta)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(nclusters + 1))
    blocks = []
    for j in range(nclusters):
        rows = order[bounds[j]:bounds[j + 1]]
        theta = result._relative_residual_cov(rows)
        for t, lam in zip(d.terms, lambdas):
            zl = np.asarray(t.z).reshape(d.nobs, t.p)[rows] @ lam
            same = t.codes[rows][:, None] == t.codes[rows][None, :]
            theta += (zl @ zl.T) * same
        blocks.append((rows, theta))
    thetas_inv = [np.linalg.inv(theta) for _, theta in blocks]
    xw = [X[rows].T @ ti for (rows, _), ti in zip(blocks, thetas_inv)]  # X_j' Theta_j^-1: (p, n_j)
    M = np.linalg.inv(sum(a @ X[rows] for a, (rows, _) in zip(xw, blocks)))
    est = []
    for a, (rows, theta) in zip(xw, blocks):
        if kind == "CR2":
            u = np.linalg.cholesky(theta).T  # upper: U'U = Theta
            g = u @ (theta - X[rows] @ M @ X[rows].T) @ u.T
            a = a @ (u.T @ _sym_power(g, -0.5) @ u)
        elif kind == "CR1":
            a = a * np.sqrt(nclusters / (nclusters - 1.0))
        est.append(a)
    comps = np.stack([e @ resid[rows] for e, (rows, _) in zip(est, blocks)])  # (J, p)
    cov = M @ (comps.T @ comps) @ M
    chol_m = np.linalg.cholesky(M)
    h = np.stack([M @ e @ X[rows] @ chol_m for e, (rows, _) in zip(est, blocks)])
    gram = np.stack([M @ e @ theta @ e.T @ M for e, (_, theta) in zip(est, blocks)])
    return ClusterRobust(kind, name, nclusters, 0.5 * (cov + cov.T), h, gram)
