"""Kenward-Roger's adjusted covariance and degrees of freedom for linear mixed models, as pbkrtest.

pbkrtest writes the marginal covariance as ``Sigma = sum_r gamma_r G_r``
(one ``G_r = Z_k E_r Z_k'`` per element of each term's covariance matrix,
and ``G = W^-1`` for the residual variance) and forms n x n matrices. Here
nothing is n x n: with the prior weights folded into ``Z`` and ``X``,
``S = Z'WZ``, ``U = Z'WX``, ``T = X'WX`` and ``C = Lambda (Lambda'S Lambda + I)^-1 Lambda'``,
Woodbury gives ``Sigma^-1 = sigma^-2 W^1/2 Pm W^1/2`` with ``Pm = I - Z C Z'``
(whitened), and every product pbkrtest needs reduces to q x q and q x p
matrices:

* ``Z'Pm^k X = R^k U`` and ``Z'Pm^k Z = R^k S`` with ``R = I - S C``;
* ``X'Pm X = T - U'C U``; ``X'Pm^2 X`` and ``X'Pm^3 X`` from ``Pm X`` (n x p);
* ``tr(Pm^2) = n - 2 tr(CS) + tr(CSCS)``.

The algebra is dense within blocks of random effects that share no row:
small blocks for nested models (any size), one block of q for crossed
factors, refused above :data:`MAX_RANDOM_EFFECTS` (use Satterthwaite).

A residual correlation structure or variance function arrives whitened
(:mod:`multilevel.lmm.residual_whitening`): its parameters ``rho_a`` add
generators ``M_a = sigma^2 H_a`` (sparse, block diagonal over residual
groups) to the random effects' ``Z E_r Z'`` and the identity of ``sigma^2``,
and, the covariance being nonlinear in them, Kenward and Roger's (1997)
second-derivative term ``R_ij = X' Sigma^-1 Sigma_ij Sigma^-1 X`` (from
``H_ab`` and, for ``(sigma^2, rho_a)``, from ``H_a``) that pbkrtest, whose
covariances are linear, never needs:
``Phi_A = Phi + 2 Phi [sum W_ij (Q_ij - P_i Phi P_j - R_ij / 4)] Phi``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp

MAX_RANDOM_EFFECTS = 8000  # dense q x q matrices: about 5 q^2 doubles (2.5 GB at this size)


@dataclass(frozen=True)
class KenwardRoger:
    """Kenward-Roger's ingredients at a REML fit.

    Attributes
    ----------
    vcov_beta : (p, p) unadjusted covariance of the fixed effects, ``Phi``
    vcov_adjusted : (p, p) adjusted covariance ``Phi_A = Phi + 2 Phi U Phi``
    p_matrices : (m, p, p) ``P_r = -X' Sigma^-1 G_r Sigma^-1 X`` per variance parameter
    w : (m, m) twice the inverse of the expected REML information of the variance parameters
    """

    vcov_beta: np.ndarray
    vcov_adjusted: np.ndarray
    p_matrices: np.ndarray
    w: np.ndarray

    def contrast_ddf(self, contrasts: np.ndarray) -> tuple[float, float]:
        """Denominator df and F scaling of the test of ``L beta = 0`` (pbkrtest's ``.KR_adjust``).

        Parameters
        ----------
        contrasts : (q, p) contrast matrix L of full row rank
        """
        L = np.atleast_2d(np.asarray(contrasts, dtype=float))
        phi = self.vcov_beta
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        u = np.einsum("ij,rjk,kl->ril", theta @ phi, self.p_matrices, phi)  # Theta Phi P_r Phi
        traces = np.einsum("rii->r", u)
        a1 = float(traces @ self.w @ traces)
        a2 = float(np.einsum("rs,rij,sji->", self.w, u, u))
        q = np.linalg.matrix_rank(L)
        b = (a1 + 6.0 * a2) / (2.0 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        denom = 3.0 * q + 2.0 * (1.0 - g)
        c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
        v0 = 1.0 + c1 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        v1, v2 = 1.0 - c2 * b, 1.0 - c3 * b
        rho = (((1.0 - a2 / q) / v1) ** 2 * v0 / v2) / q
        df2 = 4.0 + (q + 2.0) / (q * rho - 1.0)
        scaling = 1.0 if abs(df2 - 2.0) < 1e-2 else df2 * (1.0 - a2 / q) / (df2 - 2.0)
        return float(df2), float(scaling)


def random_effects_matrix(terms: list[Any], nobs: int) -> tuple[sp.csr_matrix, list[slice]]:
    """Sparse Z (n x q), term-major, level-major, component-minor, and each term's column slice."""
    blocks, slices, offset = [], [], 0
    for t in terms:
        z = np.asarray(t.z, dtype=float).reshape(nobs, t.p)
        cols = np.asarray(t.codes, dtype=np.int64)[:, None] * t.p + np.arange(t.p)[None, :]
        blocks.append(sp.csr_matrix((z.ravel(), (np.repeat(np.arange(nobs), t.p), cols.ravel())),
                                    shape=(nobs, t.nlevels * t.p)))
        slices.append(slice(offset, offset + t.nlevels * t.p))
        offset += t.nlevels * t.p
    return sp.hstack(blocks, format="csr"), slices


def _lambda_matrix(lambdas: list[np.ndarray], terms: list[Any]) -> sp.csr_matrix:
    return sp.block_diag([sp.kron(sp.identity(t.nlevels), lam) for t, lam in zip(terms, lambdas)], format="csr")


def _unit_matrices(p: int) -> list[np.ndarray]:
    """pbkrtest's E_r for one term: a 1 at (i, i), or at (i, j) and (j, i), lower triangle by column."""
    out = []
    for c in range(p):
        for r in range(c, p):
            e = np.zeros((p, p))
            e[r, c] = e[c, r] = 1.0
            out.append(e)
    return out


def _components(S: sp.csr_matrix, slices: list[slice], terms: list[Any], nobs: int) -> tuple[int, np.ndarray,
                                                                                         np.ndarray]:
    """Blocks of random effects that share no row (nested models: the outer groups; crossed: one).

    Returns the number of blocks, the block of each random effect (q,) and of each row (n,).
    """
    from scipy.sparse.csgraph import connected_components

    count, of_column = connected_components(S, directed=False)
    first = terms[0]
    of_row = of_column[slices[0].start + np.asarray(first.codes, dtype=np.int64) * first.p]
    return count, of_column, of_row


@dataclass(frozen=True)
class RowParameters:
    """Variance parameters acting on the (whitened) rows: each ``H_a`` and ``H_ab`` is (n, n), sparse and
    symmetric, with the design's rows (see :mod:`multilevel.lmm.residual_whitening`); ``second[a]`` holds
    ``H_ab`` for ``b <= a`` only (the lower triangle)."""

    first: list[sp.csr_matrix]
    second: list[list[sp.csr_matrix]]

    def block(self, order: np.ndarray | slice) -> RowParameters:
        """The matrices restricted to the rows ``order`` (indices or a slice), in that order."""
        def take(m: sp.csr_matrix) -> sp.csr_matrix:
            return m[order, order] if isinstance(order, slice) else m[order][:, order]  # a slice: one 2-d slice

        return RowParameters([take(m) for m in self.first], [[take(m) for m in row] for row in self.second])


#: Rows of a block up to which the residual parameters' terms use dense matrices.
DENSE_BLOCK_ROWS = 2000


def _dense(a: Any) -> np.ndarray:
    return a.toarray() if sp.issparse(a) else np.asarray(a)


def _sum_of_product(a: Any, b: Any) -> float:
    """``sum(a * b)`` elementwise, ``tr(a b)`` for symmetric matrices, sparse or dense."""
    return float(a.multiply(b).sum()) if sp.issparse(a) else float(np.sum(a * b))


def _spread(e: np.ndarray, p: int, a: np.ndarray) -> np.ndarray:
    """(I_levels kron E) applied to ``a``, whose rows are one term's random effects (p per level) in a block."""
    block = a.reshape(-1, p, a.shape[1])
    return np.einsum("ij,ajc->aic", e, block).reshape(a.shape)


class _Sums:
    """Kenward-Roger's sums over blocks of random effects (see :func:`kenward_roger`)."""

    def __init__(self, params: list[tuple[int | None, np.ndarray | None]], p: int, nrow_params: int = 0) -> None:
        npar = len(params) + nrow_params
        self.params = params
        self.ucu = np.zeros((p, p))
        self.x_pm2_x = np.zeros((p, p))
        self.zy_c_zy = np.zeros((p, p))
        self.trace_cs = 0.0
        self.trace_cscs = 0.0
        self.P = np.zeros((npar, p, p))
        self.Q = np.zeros((npar, npar, p, p))
        self.K = np.zeros((npar, npar))
        self.second = np.zeros((npar, npar, p, p))  # R_ij, nonzero only where a row parameter enters


def _add_block(sums: _Sums, terms: list[Any], cols: list[np.ndarray], Sc: np.ndarray, Uc: np.ndarray,
               lam: np.ndarray, Zc: sp.csr_matrix, Xc: np.ndarray, row_params: RowParameters | None = None,
               s2: float = 1.0) -> None:
    """Add one block's terms: ``cols[k]`` are the block's positions of term k's random effects;
    ``row_params`` the block's ``H_a`` and ``H_ab`` (residual parameters, if any)."""
    qc = Sc.shape[0]
    m = lam.T @ Sc @ lam + np.eye(qc)
    C = lam @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(m, lower=True), lam.T)
    R = np.eye(qc) - Sc @ C
    RU, RS = R @ Uc, R @ Sc
    R2U, R2S = R @ RU, R @ RS
    cs = C @ Sc
    sums.trace_cs += np.trace(cs)
    sums.trace_cscs += np.sum(cs * cs.T)
    sums.ucu += Uc.T @ C @ Uc
    pm_x = Xc - Zc @ (C @ Uc)
    sums.x_pm2_x += pm_x.T @ pm_x
    zy = np.asarray(Zc.T @ pm_x)
    sums.zy_c_zy += zy.T @ C @ zy

    def spread(k: int, e: np.ndarray, a: np.ndarray) -> np.ndarray:
        return _spread(e, terms[k].p, a)

    e_ru = [None if k is None else spread(k, e, RU[cols[k]]) for k, e in sums.params]
    for r, (k, e) in enumerate(sums.params):
        if k is None or cols[k].size == 0:
            continue
        sums.P[r] -= RU[cols[k]].T @ e_ru[r]
        for s, (l, f) in enumerate(sums.params):
            if s < r:
                continue
            if l is None:
                sums.Q[r, s] += e_ru[r].T @ R2U[cols[k]]
                sums.K[r, s] += np.trace(spread(k, e, R2S[np.ix_(cols[k], cols[k])]))
            elif cols[l].size:
                sums.Q[r, s] += e_ru[r].T @ RS[np.ix_(cols[k], cols[l])] @ e_ru[s]
                er_rs = spread(k, e, RS[np.ix_(cols[k], cols[l])])
                fs_rs = spread(l, f, RS[np.ix_(cols[l], cols[k])])
                sums.K[r, s] += np.sum(er_rs * fs_rs.T)
    if row_params is not None and row_params.first:
        _add_row_parameters(sums, terms, cols, Sc, C, R, RU, e_ru, Zc, pm_x, row_params, s2)


def _add_row_parameters(sums: _Sums, terms: list[Any], cols: list[np.ndarray], Sc: np.ndarray, C: np.ndarray,
                        R: np.ndarray, RU: np.ndarray, e_ru: list[Any], Zc: sp.csr_matrix, pm_x: np.ndarray,
                        row_params: RowParameters, s2: float) -> None:
    """The block's terms of the row parameters ``M_a = sigma^2 H_a`` (module notes), with ``Y = Pm X``,
    ``Pm = I - Z C Z'``, ``Z'Pm = R Z'``: ``P_a = -Y'M_a Y``, ``Q_ab = (M_a Y)' Pm M_b Y``,
    ``K_ab = tr(M_a M_b) - 2 tr(C (M_a Z)'(M_b Z)) + tr(C A_a C A_b)`` with ``A_a = Z'M_a Z``,
    ``K_ra = tr(E_r R A_a R')`` and ``K_sigma,a = tr(M_a) - 2 tr(C A_a) + tr(C S C A_a)``."""
    first = len(sums.params)  # the row parameters follow sigma^2 (index first - 1)
    res = first - 1
    h, h2 = row_params.first, row_params.second
    if Zc.shape[0] <= DENSE_BLOCK_ROWS:  # small blocks (nested models): dense algebra, no sparse overhead
        Zc = Zc.toarray()
        h, h2 = [a.toarray() for a in h], [[a.toarray() for a in row] for row in h2]
    m = [s2 * a for a in h]
    m_y = [a @ pm_x for a in m]
    pm_m_y = [a - Zc @ (C @ np.asarray(Zc.T @ a)) for a in m_y]
    m_z = [a @ Zc for a in m]
    A = [_dense(Zc.T @ a) for a in m_z]
    csc = C @ Sc @ C
    for a in range(len(m)):
        i = first + a
        y_m_y = pm_x.T @ m_y[a]
        sums.P[i] -= y_m_y
        z_pm_m_y = np.asarray(Zc.T @ pm_m_y[a])
        B = R @ A[a] @ R.T
        for r, (k, e) in enumerate(sums.params):
            if k is None or cols[k].size == 0:
                continue
            sums.Q[r, i] += e_ru[r].T @ z_pm_m_y[cols[k]]
            sums.K[r, i] += np.trace(_spread(e, terms[k].p, B[np.ix_(cols[k], cols[k])]))
        sums.Q[res, i] += pm_x.T @ pm_m_y[a]
        sums.K[res, i] += m[a].diagonal().sum() - 2.0 * np.sum(C * A[a]) + np.sum(csc * A[a])
        sums.second[res, i] += y_m_y / s2
        for b in range(a + 1):
            j = first + b
            sums.Q[j, i] += m_y[b].T @ pm_m_y[a]
            sums.K[j, i] += (_sum_of_product(m[a], m[b]) - 2.0 * np.sum(C * _dense(m_z[a].T @ m_z[b]))
                             + np.sum((C @ A[a]) * (C @ A[b]).T))
            sums.second[j, i] += pm_x.T @ (s2 * h2[a][b]) @ pm_x


def kenward_roger(design: Any, lambdas: list[np.ndarray], sigma: float,
                  row_parameters: RowParameters | None = None) -> KenwardRoger:
    """Kenward-Roger's adjusted covariance at a REML estimate.

    The q x q algebra is done per block of random effects that share no
    row: the outer groups of a nested model (each small), one block for
    crossed factors.

    Parameters
    ----------
    design : an in-memory :class:`~multilevel.lmm.design.LmmDesign` (rows kept; whitened where a residual
        structure is fitted)
    lambdas : per term, its (p_k, p_k) lower-triangular relative covariance factor
    sigma : residual standard deviation (REML)
    row_parameters : the whitened residual-covariance derivatives of a residual structure's parameters,
        which follow sigma^2 among the variance parameters (module notes); None for ``sigma^2 W^-1``

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> from multilevel.lmm.theta import term_lambdas
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> kr = kenward_roger(fit.design, term_lambdas(fit.design.terms, fit._theta), fit.sigma)
    >>> round(kr.contrast_ddf([[0.0, 1.0]])[0], 3)
    17.0
    """
    terms, n = design.terms, design.nobs
    Z, slices = random_effects_matrix(terms, n)
    X = np.asarray(design.X, dtype=float)
    if design.weights is not None:  # whiten: Sigma = Z D Z' + sigma^2 W^-1 -> unit residual weights
        root = np.sqrt(np.asarray(design.weights, dtype=float))
        Z, X = sp.diags(root) @ Z, X * root[:, None]
    Z = sp.csr_matrix(Z)
    S = sp.csr_matrix(Z.T @ Z)
    U = np.asarray(Z.T @ X)
    T = X.T @ X
    count, of_column, of_row = _components(S, slices, terms, n)
    sizes = np.bincount(of_column, minlength=count)
    if sizes.max() > MAX_RANDOM_EFFECTS:
        raise ValueError(f"Kenward-Roger needs dense {sizes.max()} x {sizes.max()} matrices for this model's "
                         f"crossed random effects (at most {MAX_RANDOM_EFFECTS}); use ddf='satterthwaite', "
                         "which scales to any size")
    lam = _lambda_matrix(lambdas, terms)
    term_of_column = np.concatenate([np.full(t.nlevels * t.p, k) for k, t in enumerate(terms)])
    params: list[tuple[int | None, np.ndarray | None]] = [
        (k, e) for k, t in enumerate(terms) for e in _unit_matrices(t.p)] + [(None, None)]
    nrow = 0 if row_parameters is None else len(row_parameters.first)
    sums = _Sums(params, X.shape[1], nrow)
    col_order = np.argsort(of_column, kind="stable")  # within a block, random effects stay in term/level order
    col_bounds = np.searchsorted(of_column[col_order], np.arange(count + 1))
    row_order = np.argsort(of_row, kind="stable")
    row_bounds = np.searchsorted(of_row[row_order], np.arange(count + 1))
    by_block = None if row_parameters is None else row_parameters.block(row_order)  # each block's rows a range
    s2 = sigma**2
    for c in range(count):
        cols = col_order[col_bounds[c]:col_bounds[c + 1]]
        rows = row_order[row_bounds[c]:row_bounds[c + 1]]
        local = [np.flatnonzero(term_of_column[cols] == k) for k in range(len(terms))]
        span = slice(row_bounds[c], row_bounds[c + 1])
        _add_block(sums, terms, local, S[cols][:, cols].toarray(), U[cols], lam[cols][:, cols].toarray(),
                   Z[rows][:, cols], X[rows], None if by_block is None else by_block.block(span), s2)
    phi = s2 * np.linalg.inv(T - sums.ucu)
    x_pm3_x = sums.x_pm2_x - sums.zy_c_zy
    trace_pm2 = n - 2.0 * sums.trace_cs + sums.trace_cscs
    res = len(params) - 1
    P = sums.P / s2**2
    P[res] = -sums.x_pm2_x / s2**2
    Q, K = sums.Q / s2**3, sums.K / s2**2
    Q[res, res], K[res, res] = x_pm3_x / s2**3, trace_pm2 / s2**2
    second = sums.second / s2**2
    for r in range(len(params) + nrow):
        for s in range(r):
            Q[r, s], K[r, s], second[r, s] = Q[s, r].T, K[s, r], second[s, r].T
    info = (K - 2.0 * np.einsum("ij,rsij->rs", phi, Q)
            + np.einsum("rij,jk,skl,li->rs", P, phi, P, phi))
    evals = np.linalg.eigvalsh(info)
    w = 2.0 * (np.linalg.inv(info) if np.min(np.abs(evals)) > 1e-10 else np.linalg.pinv(info))
    u_sum = (np.einsum("rs,rsij->ij", w, Q) - np.einsum("rs,rij,jk,skl->il", w, P, phi, P)
             - 0.25 * np.einsum("rs,rsij->ij", w, second))
    adjusted = phi + 2.0 * phi @ u_sum @ phi
    return KenwardRoger(vcov_beta=phi, vcov_adjusted=0.5 * (adjusted + adjusted.T), p_matrices=P, w=w)
