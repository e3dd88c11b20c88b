"""The Laplace and adaptive Gauss-Hermite approximations to -2 log-likelihood of a GLMM.

Both are "deviance" scale, up to the saturated-model constant (as lme4's
``devfun``): Laplace is ``sum of unit deviances + ||u||^2 + log det L^2`` at
the conditional modes; adaptive Gauss-Hermite quadrature (one scalar
random-effect term) replaces each group's Laplace term by a quadrature
centred at the group's mode and scaled by its conditional standard deviation.
"""

from __future__ import annotations

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from multilevel.families import Family
from multilevel.glmm.pirls import Pirls, PirlsState
from multilevel.lmm.design import LmmDesign


def check_quadrature(design: LmmDesign, nagq: int) -> None:
    """``nagq > 1`` needs a single scalar random-effect term (as lme4)."""
    if nagq < 0 or int(nagq) != nagq:
        raise ValueError(f"nagq must be a non-negative integer, not {nagq!r}")
    if nagq > 1 and (len(design.terms) != 1 or design.terms[0].p != 1):
        raise ValueError(
            f"nagq = {nagq} (adaptive Gauss-Hermite quadrature) needs a single scalar random-effect term such as "
            f"(1 | g); this model has {', '.join(t.label for t in design.terms)}. Use nagq=1 (Laplace)"
        )
    if nagq > 100:
        raise ValueError(f"nagq = {nagq} is more quadrature points than useful; use at most 100")


class GlmmObjective:
    """Deviance functions of one GLMM: ``stage1(theta)`` (beta from PIRLS) and ``__call__(theta, beta)``."""

    def __init__(self, design: LmmDesign, family: Family, nagq: int = 1) -> None:
        check_quadrature(design, nagq)
        self.design = design
        self.family = family
        self.nagq = max(int(nagq), 1)
        self.pirls = Pirls(design, family)
        self.ntheta = design.ntheta
        if self.nagq > 1:
            nodes, weights = hermegauss(self.nagq)
            self.nodes, self.log_weights = nodes, np.log(weights / np.sqrt(2 * np.pi))

    def stage1(self, theta: np.ndarray) -> float:
        """Laplace deviance with beta and u from PIRLS at ``theta`` (lme4's first stage)."""
        return self.pirls.run(np.asarray(theta, dtype=float)).laplace

    def state(self, theta: np.ndarray, beta: np.ndarray) -> PirlsState:
        return self.pirls.run(np.asarray(theta, dtype=float), np.asarray(beta, dtype=float))

    def __call__(self, params: np.ndarray) -> float:
        """Deviance at ``params = (theta, beta)`` (Laplace, or AGQ when nagq > 1)."""
        theta, beta = params[: self.ntheta], params[self.ntheta:]
        st = self.state(theta, beta)
        return st.laplace if self.nagq == 1 else self.agq(theta, beta, st)

    def agq(self, theta: np.ndarray, beta: np.ndarray, st: PirlsState) -> float:
        """Adaptive Gauss-Hermite deviance for one scalar term ``(z | g)``."""
        d, fam = self.design, self.family
        term = d.terms[0]
        z, codes, lam = term.z[:, 0], term.codes, float(theta[0])
        prior = self.pirls.prior
        mu, mu_eta = fam.link.inverse_and_mu_eta(st.eta)
        w = prior * mu_eta**2 / fam.variance(mu)
        l2 = 1.0 + lam**2 * np.bincount(codes, weights=w * z**2, minlength=term.nlevels)
        sd = 1.0 / np.sqrt(l2)
        fixed = d.X @ beta + self.pirls.offset
        terms = np.empty((self.nagq, term.nlevels))
        for k, (node, logw) in enumerate(zip(self.nodes, self.log_weights)):
            u_k = st.u + sd * node
            dev = prior * fam.unit_deviance(d.y, fam.link.inverse(fixed + lam * z * u_k[codes]))
            dev_j = np.bincount(codes, weights=dev, minlength=term.nlevels)
            terms[k] = logw - 0.5 * (dev_j + u_k**2 - node**2)
        return float(np.sum(-2.0 * logsumexp(terms, axis=0) + np.log(l2)))
