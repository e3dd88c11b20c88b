"""The Laplace and adaptive Gauss-Hermite approximations to -2 log-likelihood of a GLMM.

Both are "deviance" scale, up to the saturated-model constant (as lme4's
``devfun``): Laplace is ``sum of unit deviances + ||u||^2 + log det L^2`` at
the conditional modes; adaptive Gauss-Hermite quadrature (one scalar
random-effect term) replaces each group's Laplace term by a quadrature
centred at the group's mode and scaled by its conditional standard deviation.
"""

from __future__ import annotations

import numbers

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy.special import logsumexp

from multilevel import _core
from multilevel.families import Family
from multilevel.glmm.gradient import has_exact_gradient, laplace_gradient
from multilevel.glmm.pirls import Pirls, PirlsState
from multilevel.lmm.design import LmmDesign

#: Families whose dispersion (Gamma phi, negative binomial shape k) is estimated with the other parameters.
DISPERSION_FAMILIES = ("gamma", "negative_binomial")


def check_quadrature(design: LmmDesign, nagq: int) -> None:
    """``nagq > 1`` needs a single scalar random-effect term (as lme4)."""
    if isinstance(nagq, bool) or not isinstance(nagq, numbers.Real):
        raise TypeError(f"nagq must be a non-negative integer, not {type(nagq).__name__}")
    if nagq < 0 or not np.isfinite(nagq) or int(nagq) != nagq:
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
        #: Gamma and negative binomial carry a dispersion parameter, last in the parameter vector as its
        #: logarithm; their objective is the full -2 log-likelihood (it depends on the dispersion).
        self.has_dispersion = family.name in DISPERSION_FAMILIES
        if self.has_dispersion and self.nagq > 1:
            raise ValueError(f"nagq > 1 is not available for the {family.name} family; use nagq=1 (Laplace)")
        self.dispersion = 1.0
        #: Whether :meth:`value_and_gradient` applies (one scalar term, canonical link, Laplace).
        self.has_gradient = has_exact_gradient(design, family, nagq)
        #: The modes of the last evaluation (at the optimum once the optimizer is done).
        self.last_state: PirlsState | None = None
        if self.nagq > 1:
            nodes, weights = hermegauss(self.nagq)
            self.nodes, self.log_weights = nodes, np.log(weights / np.sqrt(2 * np.pi))

    def stage1(self, theta: np.ndarray) -> float:
        """Laplace deviance with beta and u from PIRLS at ``theta`` (lme4's first stage)."""
        return self.pirls.run(np.asarray(theta, dtype=float)).laplace

    def state(self, theta: np.ndarray, beta: np.ndarray) -> PirlsState:
        self.last_state = self.pirls.run(np.asarray(theta, dtype=float), np.asarray(beta, dtype=float))
        return self.last_state

    def value_and_gradient(self, params: np.ndarray) -> tuple[float, np.ndarray]:
        """Laplace deviance and its exact gradient in ``(theta, beta)`` (requires :attr:`has_gradient`)."""
        theta, beta = params[: self.ntheta], params[self.ntheta:]
        st = self.state(theta, beta)
        return st.laplace, laplace_gradient(self.design, self.family, self.pirls.prior, float(theta[0]), st)

    def set_dispersion(self, value: float) -> None:
        self.dispersion = float(value)
        self.pirls.set_dispersion(self.dispersion)

    def __call__(self, params: np.ndarray) -> float:
        """Deviance at ``params = (theta, beta[, log dispersion])`` (Laplace, or AGQ when nagq > 1)."""
        params = np.asarray(params, dtype=float)
        if self.has_dispersion:
            self.set_dispersion(float(np.exp(params[-1])))
            params = params[:-1]
        theta, beta = params[: self.ntheta], params[self.ntheta:]
        st = self.state(theta, beta)
        if self.has_dispersion:
            return self.full_laplace(theta, st)
        return st.laplace if self.nagq == 1 else self.agq(theta, beta, st)

    def full_laplace(self, theta: np.ndarray, st: PirlsState) -> float:
        """-2 log-likelihood by Laplace with every constant: -2 sum log p(y | modes) + ||u||^2 + log det L^2.

        The log link is not canonical for these families, so the Laplace term takes the observed
        information at the modes (as glmmTMB), not PIRLS's expected weights: for the negative binomial
        ``mu k (y + k) / (mu + k)^2``, for the Gamma ``y / (phi mu)``.
        """
        fam, d, prior = self.pirls.family, self.design, self.pirls.prior
        y, mu = d.y, st.mu
        if fam.name == "gamma":
            logp = fam.log_density(y, mu, prior, self.dispersion)
            observed = prior * y / (self.dispersion * mu)
        else:
            logp = fam.log_density(y, mu, prior)
            k = fam.shape
            observed = prior * mu * k * (y + k) / (mu + k) ** 2
        # Only the random-effects factor matters; any response with a positive residual will do.
        core = _core.LmmCore(np.ones(d.nobs), np.zeros((d.nobs, 0)), observed, [t.codes for t in d.terms],
                             [t.z for t in d.terms], [t.nlevels for t in d.terms])
        logdet = float(core.solve(np.asarray(theta, dtype=float), False)["logdet_re"])
        return float(-2.0 * np.sum(logp) + st.u @ st.u + logdet)

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
