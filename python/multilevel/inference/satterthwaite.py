"""Satterthwaite's denominator degrees of freedom for linear mixed models, as lmerTest computes them.

The variance parameters are ``varpar = (theta, sigma)``. lmerTest's recipe:

* ``A = 2 H^-1``, the asymptotic covariance of ``varpar``, from the Hessian
  ``H`` of the deviance in ``varpar`` (beta profiled out; sigma explicit);
* ``J_i = d cov(beta) / d varpar_i``;
* for a contrast ``l``: ``df = 2 (l' C l)^2 / (g' A g)`` with ``g_i = l' J_i l``.

Every evaluation is one solve of the model's normal equations at a theta
(no refit, no pass over the rows), so this works for chunked and Dask fits
too. Everything in sigma is exact (see :func:`varpar_sensitivity`); the
theta derivatives are Richardson-refined central differences.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from multilevel.inference.wald import covariance_from_rx

EIGEN_TOL = 1e-8  # lmerTest's tolerance on the Hessian's eigenvalues
# Relative step of the differences. With one Richardson step the truncation error is O(h^4);
# smaller steps lose digits to rounding (the deviance is O(n), its curvature O(1)): on sleepstudy
# 3e-3 agrees with lmerTest's numDeriv to 1e-6 relative, 1e-4 only to 6e-4.
STEP = 3e-3


def varpar_deviance(core: Any, varpar: np.ndarray, reml: bool) -> float:
    """-2 log-likelihood (REML: restricted) at ``theta = varpar[:-1]``, ``sigma = varpar[-1]``.

    lmerTest's ``devfun_vp``: ``log|L|^2 + pwrss / sigma^2 + n log(2 pi sigma^2)``,
    plus ``2 log|RX| - p log(2 pi sigma^2)`` for REML.
    """
    theta, sigma2 = varpar[:-1], varpar[-1] ** 2
    sol = core.solve(theta, reml)
    n = core.nobs
    dev = float(sol["logdet_re"]) + float(sol["pwrss"]) / sigma2 + n * np.log(2.0 * np.pi * sigma2)
    if not reml:
        return dev
    rx = np.asarray(sol["RX"])
    return dev + 2.0 * float(np.sum(np.log(np.abs(np.diag(rx))))) - rx.shape[0] * np.log(2.0 * np.pi * sigma2)


@dataclass(frozen=True)
class VarparSensitivity:
    """How the covariance of the fixed effects moves with the variance parameters.

    Attributes
    ----------
    vcov_beta : (p, p) covariance of the fixed effects at the estimate
    vcov_varpar : (k + 1, k + 1) asymptotic covariance of ``(theta, sigma)``, ``2 H^+``
    jacobian : (k + 1, p, p) ``d vcov_beta / d varpar_i``, theta first, sigma last
    """

    vcov_beta: np.ndarray
    vcov_varpar: np.ndarray
    jacobian: np.ndarray

    def contrast_df(self, contrast: np.ndarray) -> float:
        """Satterthwaite's df of one contrast ``l'beta`` (lmerTest's ``contest1D``)."""
        l = np.asarray(contrast, dtype=float)
        var = float(l @ self.vcov_beta @ l)
        grad = np.einsum("i,kij,j->k", l, self.jacobian, l)
        denom = float(grad @ self.vcov_varpar @ grad)
        return 2.0 * var**2 / denom if denom > 0 else np.inf


@dataclass(frozen=True)
class _Solve:
    """What one solve at a theta gives: ``A = log|L|^2 (+ log|RX|^2)``, ``B = pwrss`` and ``(RX RX')^-1``."""

    a: float
    b: float
    unscaled: np.ndarray


def solve_core(core: Any, theta: np.ndarray, reml: bool, extra: float = 0.0) -> _Solve:
    """``A``, ``B`` and ``(RX' RX)^-1`` of one solve of ``core`` at ``theta``; ``extra`` is added to ``A``
    (a residual structure's Jacobian term)."""
    sol = core.solve(theta, reml)
    rx = np.asarray(sol["RX"])
    a = float(sol["logdet_re"]) + (2.0 * float(np.sum(np.log(np.abs(np.diag(rx))))) if reml else 0.0)
    return _Solve(a + extra, float(sol["pwrss"]), covariance_from_rx(rx))


def varpar_sensitivity(core: Any, theta: np.ndarray, sigma: float, reml: bool,
                       solve_at: Callable[[np.ndarray], _Solve] | None = None) -> VarparSensitivity:
    """Hessian of the deviance and Jacobian of cov(beta) in ``(theta, sigma)`` at a fit.

    The deviance is ``A(theta) + B(theta) / sigma^2 + c log(2 pi sigma^2)`` (``c = n``, or
    ``n - p`` for REML), so everything in sigma is exact, and one set of solves at theta
    points serves the theta block of the Hessian (second differences of ``A + B / sigma^2``:
    the diagonal from ``theta +/- h e_i``, each pair from ``theta +/- (h e_i + h e_j)``), the
    ``(theta, sigma)`` block (``-2 dB/dtheta / sigma^3``) and the Jacobian of ``cov(beta)``,
    each refined by one Richardson step: ``2 k^2 + 1`` solves for ``k`` thetas.

    Parameters
    ----------
    core : the fitted model's ``LmmCore`` (its ``solve(theta, reml)`` is all that is used, and
        its ``nobs``)
    theta : (k,) relative covariance parameters at the optimum (with ``solve_at``: every variance
        parameter but sigma)
    sigma : residual standard deviation at the optimum
    reml : whether the fit is REML
    solve_at : optional
        ``A``, ``B`` and ``(RX' RX)^-1`` at a parameter vector, for models whose deviance has that
        form in more parameters than theta (a residual correlation structure: ``theta`` then holds
        theta and the residual parameters, and ``A`` the Jacobian term); default ``core``'s solve.

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
    >>> sens = varpar_sensitivity(fit._core, fit._theta, fit.sigma, True)
    >>> round(sens.contrast_df([0.0, 1.0]), 2)
    17.0
    """
    theta = np.asarray(theta, dtype=float)
    k = theta.size
    if solve_at is None:
        def solve_at(point: np.ndarray) -> _Solve:
            return solve_core(core, point, reml)
    center = solve_at(theta)
    p = center.unscaled.shape[0]
    c = core.nobs - (p if reml else 0)
    s2 = sigma**2

    def value(sol: _Solve) -> float:
        return sol.a + sol.b / s2

    def block(h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Theta Hessian of A + B/s2, gradient of B and Jacobian of the unscaled covariance at steps h."""
        plus = [solve_at(theta + h[i] * np.eye(k)[i]) for i in range(k)]
        minus = [solve_at(theta - h[i] * np.eye(k)[i]) for i in range(k)]
        hess = np.zeros((k, k))
        for i in range(k):
            hess[i, i] = (value(plus[i]) - 2.0 * value(center) + value(minus[i])) / h[i] ** 2
            for j in range(i):
                d = h[i] * np.eye(k)[i] + h[j] * np.eye(k)[j]
                both = value(solve_at(theta + d)) + value(solve_at(theta - d))
                hess[i, j] = hess[j, i] = (both - value(plus[i]) - value(minus[i]) - value(plus[j])
                                           - value(minus[j]) + 2.0 * value(center)) / (2.0 * h[i] * h[j])
        grad_b = np.array([(plus[i].b - minus[i].b) / (2.0 * h[i]) for i in range(k)])
        jac = np.stack([(plus[i].unscaled - minus[i].unscaled) / (2.0 * h[i]) for i in range(k)]) if k else \
            np.zeros((0, p, p))
        return hess, grad_b, jac

    steps = STEP * np.maximum(np.abs(theta), 1.0)
    coarse, fine = block(steps), block(steps / 2.0)
    h_tt, grad_b, d_unscaled = ((4.0 * f - g) / 3.0 for f, g in zip(fine, coarse))
    hess = np.zeros((k + 1, k + 1))
    hess[:k, :k] = h_tt
    hess[:k, k] = hess[k, :k] = -2.0 * grad_b / sigma**3
    hess[k, k] = 6.0 * center.b / sigma**4 - 2.0 * c / s2
    evals, evecs = np.linalg.eigh(0.5 * (hess + hess.T))
    negative = evals < -EIGEN_TOL
    if negative.any():
        warnings.warn(f"the Hessian of the deviance in (theta, sigma) has {int(negative.sum())} negative "
                      f"eigenvalue(s) {np.round(evals[negative], 4).tolist()}: the fit may not have converged; "
                      "Satterthwaite's df use its positive part", RuntimeWarning, stacklevel=3)
    keep = evals > EIGEN_TOL
    vcov_varpar = 2.0 * (evecs[:, keep] / evals[keep]) @ evecs[:, keep].T
    jacobian = np.concatenate([s2 * d_unscaled, (2.0 * sigma * center.unscaled)[None]])
    return VarparSensitivity(vcov_beta=s2 * center.unscaled, vcov_varpar=vcov_varpar, jacobian=jacobian)
