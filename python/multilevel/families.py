"""Exponential-family distributions and link functions for GEE and GLMM.

A :class:`Family` pairs a variance function ``v(mu)`` with a :class:`Link`
``g`` (``g(mu) = eta``); both act elementwise on numpy arrays. Families and
links are accepted as objects or by name (``"binomial"``, ``"logit"``), as in
R's ``family`` argument.

Examples
--------
>>> import numpy as np
>>> fam = get_family("poisson")
>>> fam.link.name, fam.variance(np.array([2.0]))
('log', array([2.]))
>>> get_family("binomial", "probit").link.name
'probit'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np
from scipy import special, stats

Array = np.ndarray

# R clamps probabilities and derivatives of binomial links away from 0 and 1.
_EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Link:
    """A link function ``eta = g(mu)`` with its inverse and ``dmu/deta``."""

    name: str
    link: Callable[[Array], Array]
    inverse: Callable[[Array], Array]
    mu_eta: Callable[[Array], Array]
    #: Optional: both at once when they share work (logit).
    both: Callable[[Array], tuple[Array, Array]] | None = None

    def inverse_and_mu_eta(self, eta: Array) -> tuple[Array, Array]:
        """``(mu, dmu/deta)`` at ``eta``."""
        return self.both(eta) if self.both is not None else (self.inverse(eta), self.mu_eta(eta))

    def __repr__(self) -> str:
        return f"Link({self.name!r})"

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        # A link is known by its name: pickles rebuild it from the table (its functions are lambdas).
        return get_link, (self.name,)


def _logit_both(eta: Array) -> tuple[Array, Array]:
    """Mean and dmu/deta of the logit link from one logistic evaluation."""
    mu = special.expit(eta)
    return np.clip(mu, _EPS, 1 - _EPS), np.maximum(mu * (1 - mu), _EPS)


def _cloglog_inverse(eta: Array) -> Array:
    return np.clip(-np.expm1(-np.exp(eta)), _EPS, 1 - _EPS)


def _cloglog_mu_eta(eta: Array) -> Array:
    eta = np.minimum(eta, 700.0)
    return np.maximum(np.exp(eta - np.exp(eta)), _EPS)


LINKS: dict[str, Link] = {
    "identity": Link("identity", lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "log": Link("log", np.log, lambda eta: np.maximum(np.exp(eta), _EPS), lambda eta: np.maximum(np.exp(eta), _EPS)),
    "logit": Link("logit", special.logit, lambda eta: _logit_both(eta)[0], lambda eta: _logit_both(eta)[1],
                  _logit_both),
    "probit": Link("probit", stats.norm.ppf, lambda eta: np.clip(special.ndtr(eta), _EPS, 1 - _EPS),
                   lambda eta: np.maximum(stats.norm.pdf(eta), _EPS)),
    "cloglog": Link("cloglog", lambda mu: np.log(-np.log1p(-mu)), _cloglog_inverse, _cloglog_mu_eta),
    "inverse": Link("inverse", lambda mu: 1.0 / mu, lambda eta: 1.0 / eta, lambda eta: -1.0 / eta**2),
    "sqrt": Link("sqrt", np.sqrt, lambda eta: eta**2, lambda eta: 2.0 * eta),
    "1/mu^2": Link("1/mu^2", lambda mu: 1.0 / mu**2, lambda eta: 1.0 / np.sqrt(eta),
                   lambda eta: -0.5 / eta**1.5),
}


def get_link(link: str | Link) -> Link:
    """A :class:`Link` from a name or a Link (``"inverse_squared"`` is ``"1/mu^2"``)."""
    if isinstance(link, Link):
        return link
    name = "1/mu^2" if str(link) == "inverse_squared" else str(link)
    if name not in LINKS:
        raise ValueError(f"unknown link {link!r}; choose one of {', '.join(sorted(LINKS))}")
    return LINKS[name]


@dataclass(frozen=True)
class Family:
    """A distribution family: variance function, link, quasi-likelihood and response checks.

    Attributes
    ----------
    name : str
        R's family name (``"gaussian"``, ``"binomial"``, ``"poisson"``, ``"Gamma"`` is ``"gamma"`` here).
    link : Link
    allowed_links : tuple of str
    """

    name: str
    link: Link
    allowed_links: tuple[str, ...]
    #: Negative binomial shape ``k`` (``Var = mu + mu^2 / k``); None for the other families.
    shape: float | None = None

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # Rebuilt from names (and the shape), so families pickle and cross process boundaries.
        return _rebuild_family, (self.name, self.link.name, self.allowed_links, self.shape)

    def with_shape(self, shape: float) -> Family:
        """The same family with negative binomial shape ``k``."""
        return replace(self, shape=float(shape))

    def variance(self, mu: Array) -> Array:
        """The variance function ``v(mu)`` (the variance is ``phi v(mu) / w``)."""
        if self.name == "negative_binomial":
            return mu + mu**2 / self._shape()
        return _VARIANCE[self.name](mu)

    def unit_deviance(self, y: Array, mu: Array) -> Array:
        """Per-row deviance ``d(y, mu)`` (twice the log-likelihood ratio to the saturated model, ``phi = 1``)."""
        if self.name == "negative_binomial":
            k = self._shape()
            return 2.0 * (special.xlogy(y, y / mu) - (y + k) * np.log((y + k) / (mu + k)))
        return _UNIT_DEVIANCE[self.name](y, mu)

    def log_density(self, y: Array, mu: Array, weights: Array, dispersion: float | None = None) -> Array:
        """Per-row log-likelihood: binomial (``weights`` trials, ``y`` a proportion), Poisson, negative
        binomial (shape ``k``), Gamma (``dispersion`` phi: variance ``phi mu^2``)."""
        if self.name == "binomial":
            trials = np.rint(weights)
            return stats.binom.logpmf(np.rint(y * trials), trials, mu)
        if self.name == "poisson":
            return weights * stats.poisson.logpmf(y, mu)
        if self.name == "negative_binomial":
            k = self._shape()
            return weights * stats.nbinom.logpmf(y, k, k / (k + mu))
        if self.name == "gamma" and dispersion is not None:
            nu = 1.0 / dispersion
            return weights * stats.gamma.logpdf(y, nu, scale=mu / nu)
        raise ValueError(f"the log-likelihood of the {self.name} family needs a dispersion parameter")

    def _shape(self) -> float:
        if self.shape is None:
            raise ValueError("the negative binomial family needs its shape k: family.with_shape(k)")
        return self.shape

    def quasi_loglik(self, y: Array, mu: Array) -> Array:
        """Per-row quasi-likelihood ``Q(mu; y)`` with ``phi = 1`` (for QIC)."""
        return _QUASI[self.name](y, mu)

    def check_response(self, y: Array, label: str) -> None:
        """Raise a ValueError naming ``label`` if ``y`` is outside the family's support."""
        bad = _OUTSIDE[self.name](y)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"response {label!r} has {int(bad.sum())} value(s) outside the support of the {self.name} "
                f"family ({_SUPPORT[self.name]}); first at row {row}: {y[row]!r}"
            )

    def start_mu(self, y: Array) -> Array:
        """Starting means for the first iteration, as R's ``family$initialize``."""
        if self.name == "binomial":
            return (y + 0.5) / 2.0
        if self.name in ("poisson", "negative_binomial"):
            return y + 0.1
        return np.where(y == 0, 0.1, y) if self.name in ("gamma", "inverse_gaussian") else y.astype(float)

    def __repr__(self) -> str:
        return f"Family({self.name!r}, link={self.link.name!r})"


_VARIANCE: dict[str, Callable[[Array], Array]] = {
    "gaussian": lambda mu: np.ones_like(mu),
    "binomial": lambda mu: mu * (1 - mu),
    "poisson": lambda mu: mu,
    "gamma": lambda mu: mu**2,
    "inverse_gaussian": lambda mu: mu**3,
}


def _binomial_quasi(y: Array, mu: Array) -> Array:
    return y * np.log(mu / (1 - mu)) + np.log1p(-mu)


def _binomial_deviance(y: Array, mu: Array) -> Array:
    # 2 [y log(y/mu) + (1-y) log((1-y)/(1-mu))], with the saturated part only where 0 < y < 1.
    saturated = np.where((y > 0) & (y < 1), special.xlogy(y, y) + special.xlogy(1 - y, 1 - y), 0.0)
    return 2.0 * (saturated - y * np.log(mu) - (1 - y) * np.log1p(-mu))


_UNIT_DEVIANCE: dict[str, Callable[[Array, Array], Array]] = {
    "gaussian": lambda y, mu: (y - mu) ** 2,
    "binomial": _binomial_deviance,
    "poisson": lambda y, mu: 2.0 * (special.xlogy(y, y / mu) - (y - mu)),
    "gamma": lambda y, mu: 2.0 * (-np.log(y / mu) + (y - mu) / mu),
    "inverse_gaussian": lambda y, mu: (y - mu) ** 2 / (y * mu**2),
}

_QUASI: dict[str, Callable[[Array, Array], Array]] = {
    "gaussian": lambda y, mu: -0.5 * (y - mu) ** 2,
    "binomial": _binomial_quasi,
    "poisson": lambda y, mu: y * np.log(mu) - mu,
    "gamma": lambda y, mu: -y / mu - np.log(mu),
    "inverse_gaussian": lambda y, mu: -y / (2 * mu**2) + 1 / mu,
}

_OUTSIDE: dict[str, Callable[[Array], Array]] = {
    "gaussian": lambda y: np.zeros(y.shape, dtype=bool),
    "binomial": lambda y: (y < 0) | (y > 1),
    "poisson": lambda y: y < 0,
    "gamma": lambda y: y <= 0,
    "inverse_gaussian": lambda y: y <= 0,
    "negative_binomial": lambda y: (y < 0) | (y != np.rint(y)),
}

_SUPPORT = {
    "gaussian": "any real value",
    "binomial": "0/1 or proportions in [0, 1] with weights as trial counts",
    "poisson": "non-negative counts",
    "gamma": "positive values",
    "inverse_gaussian": "positive values",
    "negative_binomial": "non-negative integer counts",
}

_FAMILY_LINKS: dict[str, tuple[str, ...]] = {
    "gaussian": ("identity", "log", "inverse"),
    "binomial": ("logit", "probit", "cloglog", "log"),
    "poisson": ("log", "identity", "sqrt"),
    "gamma": ("inverse", "log", "identity"),
    "inverse_gaussian": ("1/mu^2", "inverse", "log", "identity"),
    "negative_binomial": ("log",),
}

_FAMILY_ALIASES = {"Gamma": "gamma", "inverse.gaussian": "inverse_gaussian", "normal": "gaussian",
                   "nbinom2": "negative_binomial", "negbin": "negative_binomial"}


def _rebuild_family(name: str, link: str, allowed: tuple[str, ...], shape: float | None) -> Family:
    return Family(name, get_link(link), allowed, shape)


def get_family(family: str | Family | Any = "gaussian", link: str | Link | None = None) -> Family:
    """A :class:`Family` from a name or a Family, with an optional link (name or Link).

    The first link of each family is its default (canonical) link.

    Examples
    --------
    >>> get_family("Gamma", "log")
    Family('gamma', link='log')
    """
    if isinstance(family, Family):
        return family if link is None else get_family(family.name, link)
    name = _FAMILY_ALIASES.get(str(family), str(family).lower())
    if name not in _FAMILY_LINKS:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(_FAMILY_LINKS)}")
    allowed = _FAMILY_LINKS[name]
    chosen = get_link(allowed[0] if link is None else link)
    if chosen.name not in allowed:
        raise ValueError(
            f"link {chosen.name!r} is not available for the {name} family; choose one of {', '.join(allowed)}"
        )
    return Family(name, chosen, allowed)


#: The families and links of the C++ core's Glm (glm.hpp's GlmFamily and GlmLink), shared by GLMM PIRLS and the
#: GEE working arrays; one table on this side of the boundary.
CORE_FAMILY_CODES = {"binomial": 0, "poisson": 1, "gamma": 2, "negative_binomial": 3, "gaussian": 4}
CORE_LINK_CODES = {"logit": 0, "probit": 1, "cloglog": 2, "log": 3, "identity": 4, "sqrt": 5}


def core_codes(family: Family) -> tuple[int, int] | None:
    """``(family, link)`` as the core's Glm takes them, or None when the core has no such family or link."""
    if family.name not in CORE_FAMILY_CODES or family.link.name not in CORE_LINK_CODES:
        return None
    return CORE_FAMILY_CODES[family.name], CORE_LINK_CODES[family.link.name]
