"""Penalized iteratively reweighted least squares (PIRLS) on the mixed-model core.

For fixed ``theta`` (and optionally fixed ``beta``), PIRLS finds the
conditional modes ``u`` (and ``beta``) of a generalized linear mixed model:
each iteration forms the GLM working weights and response at the current
linear predictor and solves the penalized weighted least-squares problem with
the blocked Cholesky of the linear mixed model (one pass over the rows builds
``[Z X z]' W [Z X z]``). Steps that increase the penalized deviance are
halved, as in lme4. The loop runs in C++ (``_core.GlmmPirls``); this module
keeps the warm start between calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from multilevel import _core
from multilevel.families import CORE_LINK_CODES, Family, core_codes
from multilevel.lmm.design import LmmDesign


class PirlsError(ValueError):
    """PIRLS could not find the conditional modes (separation, a diverging or non-finite deviance)."""


@dataclass
class PirlsState:
    """The conditional modes at one ``theta`` (and ``beta``) and the Laplace pieces."""

    eta: np.ndarray  # (n,) linear predictor at the modes, offset included
    mu: np.ndarray
    beta: np.ndarray
    u: np.ndarray  # spherical modes, all terms concatenated (term k: p_k x nlevels_k, column-major)
    b: list[np.ndarray]  # per term (p_k, nlevels_k)
    deviance: float  # sum of prior-weighted unit deviances at the modes
    logdet: float  # log det(Lambda' Z' W Z Lambda + I) at the modes' weights
    core: Any  # the GlmmPirls holding the final factorization (solve / conditional_variance like LmmCore)
    iterations: int

    @property
    def laplace(self) -> float:
        """Laplace approximation to -2 log-likelihood, up to the saturated-model constant."""
        return self.deviance + float(self.u @ self.u) + self.logdet


#: The families PIRLS fits (the core's Glm has gaussian too, for the GEE working arrays).
_PIRLS_FAMILIES = ("binomial", "poisson", "gamma", "negative_binomial")


class Pirls:
    """PIRLS for one model (in C++); remembers the last modes to warm-start the next call."""

    def __init__(self, design: LmmDesign, family: Family, tol: float = 1e-10, maxiter: int = 200) -> None:
        codes = core_codes(family)
        if codes is None or family.name not in _PIRLS_FAMILIES:
            raise ValueError(f"PIRLS supports the binomial, poisson, gamma and negative_binomial families with the "
                             f"{', '.join(CORE_LINK_CODES)} links, not {family.name}({family.link.name})")
        self.design = design
        self.family = family
        self.tol = tol
        self.maxiter = maxiter
        n = design.nobs
        self.prior = design.weights if design.weights is not None else np.ones(n)
        self.offset = design.offset if design.offset is not None else np.zeros(n)
        self.core = _core.GlmmPirls(design.y, np.asarray(design.X, dtype=float), self.prior, self.offset,
                                    [t.codes for t in design.terms], [np.asarray(t.z, dtype=float) for t in design.terms],
                                    [t.nlevels for t in design.terms], *codes)
        self.eta = family.link.link(family.start_mu(design.y))
        self.zb = np.zeros(n)  # random part of the last modes, to warm-start a new beta
        if family.name == "negative_binomial":
            self.set_dispersion(family.shape if family.shape is not None else 1.0)

    def warm_start(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the next run starts: the last linear predictor and random part (copies)."""
        return self.eta.copy(), self.zb.copy()

    def set_warm_start(self, start: tuple[np.ndarray, np.ndarray]) -> None:
        """Start the next run from a saved :meth:`warm_start`."""
        self.eta, self.zb = start[0].copy(), start[1].copy()

    def set_dispersion(self, value: float) -> None:
        """Gamma: the dispersion phi (the conditional log-likelihood is sum -d_i / (2 phi));
        negative binomial: the shape k of the variance function."""
        if self.family.name == "gamma":
            self.core.set_prior(self.prior / value)
        elif self.family.name == "negative_binomial":
            self.core.set_shape(value)
            self.family = self.family.with_shape(value)
        else:
            raise ValueError(f"the {self.family.name} family has no dispersion parameter")

    def run(self, theta: np.ndarray, beta: np.ndarray | None = None) -> PirlsState:
        """Conditional modes at ``theta``; ``beta`` fixed if given, else estimated jointly."""
        d = self.design
        theta = np.asarray(theta, dtype=float)
        if beta is None:
            eta0, fixed = self.eta, np.zeros(d.X.shape[1])
        else:
            fixed = np.asarray(beta, dtype=float)
            eta0 = d.X @ fixed + self.zb + self.offset
        try:
            out = self.core.run(theta, fixed, beta is not None, eta0, self.tol, self.maxiter)
        except RuntimeError as exc:
            raise PirlsError(f"{exc} (theta = {np.round(theta, 6).tolist()})") from exc
        eta = np.asarray(out["eta"])
        self.eta = eta
        self.zb = eta - self.offset - d.X @ np.asarray(out["beta"])
        mu = self.family.link.inverse(eta)
        return PirlsState(eta, mu, np.asarray(out["beta"]), np.asarray(out["u"]),
                          [np.asarray(b) for b in out["b"]], float(out["deviance"]), float(out["logdet"]),
                          self.core, int(out["iterations"]))
