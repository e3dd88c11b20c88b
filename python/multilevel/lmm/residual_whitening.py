"""A residual fit's rows whitened by each group's Cholesky factor, with the residual covariance's derivatives.

Kenward-Roger's method needs ``Sigma``'s first and second derivatives in every variance parameter.
With ``sigma^2 S_j = sigma^2 G_j R_j G_j = sigma^2 L_j L_j'`` in residual group ``j`` (``L_j`` its
Cholesky factor), the whitened rows ``L_j^-1 [X_j | Z_j]`` make an ordinary LMM with unit residual
covariance, and a residual parameter ``rho_a`` enters through the whitened derivatives

    ``H_a = L^-1 (dS / drho_a) L^-T`` and ``H_ab = L^-1 (d^2 S / drho_a drho_b) L^-T``,

block diagonal over the residual groups. The parameters are nlme's natural ones (the correlation
parameters, the variance function's ratios or powers), as SAS's ``DDFM=KR`` uses its covariance
parameters: with a covariance nonlinear in them Kenward-Roger's adjustment depends on that choice.

``R_j`` is differenced once per pattern of positions (or times) and the standard-deviation factors
``g`` once for all rows; ``dS = dR o gg' + R o d(gg')``, so no group's matrix is differenced alone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from multilevel.correlation import cluster_matrix
from multilevel.inference.kenward_roger import RowParameters
from multilevel.lmm.design import LmmDesign
from multilevel.lmm.residual import ResidualModel, residual_patterns

#: Relative step of the central differences in the natural residual parameters.
DIFFERENCE_STEP = 1e-4


@dataclass(frozen=True)
class WhitenedResidual:
    """Whitened rows and residual-covariance derivatives at a residual fit's parameters.

    Attributes
    ----------
    design : the design with ``L^-1 (y - offset)``, ``L^-1 X`` and each term's ``L^-1 z`` (prior weights and
        offset folded in, none left)
    derivatives : per natural residual parameter (correlation parameters, then the variance function's), the
        (n, n) sparse block-diagonal ``H_a``, and ``H_ab`` for ``b <= a``
    """

    design: LmmDesign
    derivatives: RowParameters


def _step(x: float) -> float:
    # Relative to the parameter, but never across zero (a continuous-time AR(1) needs phi > 0).
    h = DIFFERENCE_STEP * max(abs(x), 1.0)
    return min(h, 0.5 * abs(x)) if x != 0.0 else h


def _derivatives(f: object, x: np.ndarray) -> tuple[np.ndarray, list[np.ndarray], list[list[np.ndarray]]]:
    """``f(x)``, its central-difference first derivatives and (symmetric) second derivatives."""
    f0 = np.asarray(f(x), dtype=float)  # type: ignore[operator]
    k = x.size
    steps = [_step(float(v)) for v in x]

    def at(*moves: tuple[int, float]) -> np.ndarray:
        y = x.astype(float).copy()
        for i, h in moves:
            y[i] += h
        return np.asarray(f(y), dtype=float)  # type: ignore[operator]

    first, second = [], [[f0] * k for _ in range(k)]
    for i, h in enumerate(steps):
        plus, minus = at((i, h)), at((i, -h))
        first.append((plus - minus) / (2 * h))
        second[i][i] = (plus - 2 * f0 + minus) / h**2
        for j in range(i):
            g = steps[j]
            second[i][j] = second[j][i] = (at((i, h), (j, g)) - at((i, h), (j, -g)) - at((i, -h), (j, g))
                                           + at((i, -h), (j, -g))) / (4 * h * g)
    return f0, first, second


Derivatives = tuple[np.ndarray, list[np.ndarray], list[list[np.ndarray]]]


class _Pattern:
    """The residual groups of one ``R_j`` pattern: ``S = R o gg'``, its whitening and derivatives."""

    def __init__(self, corr: Derivatives, sd: Derivatives, rows: np.ndarray) -> None:
        self.r, self.dr, self.d2r = corr
        self.nc = len(self.dr)
        g, self.dg, self.d2g = sd
        self.rows = rows  # (count, m)
        self.g = g[rows]
        self.gg = self.g[:, :, None] * self.g[:, None, :]
        self.inverse = np.linalg.inv(np.linalg.cholesky(self.r[None] * self.gg))  # small: m x m per group

    def whitened(self, m: np.ndarray) -> np.ndarray:
        """``L^-1 m L^-T`` per group, m (count, m, m)."""
        return self.inverse @ m @ np.swapaxes(self.inverse, 1, 2)

    def _outer(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``a b' + b a'`` per group."""
        return a[:, :, None] * b[:, None, :] + b[:, :, None] * a[:, None, :]

    def d_gg(self, a: int, b: int | None = None) -> np.ndarray:
        """d(g g') in the variance parameters a (and b)."""
        da = self.dg[a][self.rows]
        if b is None:
            return self._outer(da, self.g)
        return self._outer(self.d2g[a][b][self.rows], self.g) + self._outer(da, self.dg[b][self.rows])

    def d_s(self, a: int, b: int | None = None) -> np.ndarray:
        """dS (or d^2 S) per group: the correlation parameters come first, then the variance's."""
        nc = self.nc
        if b is None:
            return self.dr[a][None] * self.gg if a < nc else self.r[None] * self.d_gg(a - nc)
        a, b = min(a, b), max(a, b)
        if b < nc:
            return self.d2r[a][b][None] * self.gg
        if a < nc:
            return self.dr[a][None] * self.d_gg(b - nc)
        return self.r[None] * self.d_gg(a - nc, b - nc)


def whiten_residual(design: LmmDesign, residual: ResidualModel, u: np.ndarray) -> WhitenedResidual:
    """Whitened rows and ``H_a``, ``H_ab`` (module notes) at the unconstrained residual parameters ``u``.

    Parameters
    ----------
    design : the in-memory design of the fit
    residual : its residual model
    u : (nparams,) unconstrained residual parameters (``fit.residual_u``)

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("distance ~ age + (1 | Subject)", load_dataset("Orthodont"), corr="ar1")
    >>> w = whiten_residual(fit.design, fit.residual, fit.residual_u)
    >>> len(w.derivatives.first), w.derivatives.first[0].shape
    (1, (108, 108))
    """
    corr, var = residual.split(u)
    nc, n = corr.size, design.nobs
    npar = nc + var.size
    g, dg, d2g = _derivatives(residual.sd_factors, var)
    X = np.column_stack([design.response_minus_offset(), np.asarray(design.X, dtype=float)])
    zs = [np.asarray(t.z, dtype=float).reshape(n, t.p) for t in design.terms]
    X_white, z_white = np.empty_like(X), [np.empty_like(z) for z in zs]
    entries: dict[tuple[int, ...], list[np.ndarray]] = {}
    index_rows, index_cols = [], []
    for j, rows in residual_patterns(residual):
        pattern = _Pattern(_derivatives(lambda c, j=j: cluster_matrix(residual.structure, c, residual.layout, j)[0],
                                        corr), (g, dg, d2g), rows)
        X_white[rows] = pattern.inverse @ X[rows]
        for z, white in zip(zs, z_white):
            white[rows] = pattern.inverse @ z[rows]

        for a in range(npar):
            entries.setdefault((a,), []).append(pattern.whitened(pattern.d_s(a)).ravel())
            for b in range(a + 1):
                entries.setdefault((a, b), []).append(pattern.whitened(pattern.d_s(a, b)).ravel())
        size = rows.shape[1]
        index_rows.append(np.repeat(rows, size, axis=1).ravel())
        index_cols.append(np.tile(rows, (1, size)).ravel())
    i, k = np.concatenate(index_rows), np.concatenate(index_cols)

    def matrix(key: tuple[int, ...]) -> sp.csr_matrix:
        return sp.csr_matrix((np.concatenate(entries[key]), (i, k)), shape=(n, n))

    derivatives = RowParameters([matrix((a,)) for a in range(npar)],
                                [[matrix((a, b)) for b in range(a + 1)] for a in range(npar)])
    white_terms = [replace(t, z=w.reshape(np.shape(t.z))) for t, w in zip(design.terms, z_white)]
    white = replace(design, y=X_white[:, 0], X=X_white[:, 1:], terms=white_terms, weights=None, offset=None)
    return WhitenedResidual(white, derivatives)
