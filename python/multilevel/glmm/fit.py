"""Fitting generalized linear mixed models, as lme4's ``glmer``.

Stage 1 optimizes the Laplace deviance over ``theta`` with ``beta`` and
``u`` from PIRLS; stage 2 optimizes over ``(theta, beta)`` jointly with ``u``
from PIRLS (Laplace, or adaptive Gauss-Hermite quadrature when
``nagq > 1``), starting from stage 1. ``nagq=0`` stops after stage 1.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from multilevel.families import Family, get_family
from multilevel.formula import caller_context, require_binomial
from multilevel.glmm.objective import DISPERSION_FAMILIES, GlmmObjective, check_quadrature
from multilevel.glmm.pirls import PirlsError
from multilevel.glmm.result import GlmmResult, rx_covariance
from multilevel.lmm.design import LmmDesign, lmm_design, without_residual_variance
from multilevel.lmm.fit import ConvergenceWarning, SingularFitWarning
from multilevel.lmm.theta import theta_lower_bounds, theta_scales, theta_start
from multilevel.optimize import (
    OptSummary,
    check_optimizer_options,
    minimize_bobyqa,
    minimize_quasi_newton,
    newton_polish,
)


class SeparationWarning(UserWarning):
    """Fitted probabilities or rates are numerically at the edge of their range."""


def _check_data(design: LmmDesign, family: Family) -> None:
    family.check_response(design.y, design.response)
    if family.name not in ("binomial", "poisson") + DISPERSION_FAMILIES:
        raise ValueError(
            f"glmm supports the binomial, poisson, gamma and negative_binomial families, not {family.name}"
        )
    if family.name in DISPERSION_FAMILIES and family.link.name != "log":
        raise ValueError(f"glmm fits the {family.name} family with the log link, not {family.link.name}")
    for term in design.terms:  # (0 | g) leaves no parameter for the optimizer
        if term.p == 0:
            raise ValueError(f"the random-effects term on {term.group!r} has no columns (0 or -1 removed the "
                             f"intercept and nothing is left); write (1 | {term.group})")
    y = design.y
    # The likelihood needs counts: a non-integer count has probability 0 (log-likelihood -inf), and an
    # unweighted binomial row is one trial (y = 0.5 would be rounded to 0 successes).
    if family.name == "poisson":
        off = np.flatnonzero(y != np.rint(y))
        if off.size:
            raise ValueError(
                f"response {design.response!r} has {off.size} non-integer count(s) (first at row {int(off[0])}: "
                f"{float(y[off[0]])!r}); the Poisson likelihood needs counts (for rates, model the counts with "
                "offset=log(exposure))"
            )
    if family.name == "binomial" and design.weights is None:
        off = np.flatnonzero((y != 0) & (y != 1))
        if off.size:
            raise ValueError(
                f"binomial response {design.response!r} has {off.size} value(s) other than 0 and 1 (first at "
                f"row {int(off[0])}: {float(y[off[0]])!r}) but no weights=; for proportions give weights= the numbers "
                "of trials"
            )
    if family.name == "binomial" and design.weights is not None:
        successes = design.y * design.weights
        off = np.abs(successes - np.rint(successes)) > 1e-8
        if off.any():
            warnings.warn(f"{int(off.sum())} binomial row(s) have a non-integer number of successes "
                          "(response x weights); the response should be a proportion of the weights' trials",
                          UserWarning, stacklevel=4)


def glm_means(design: LmmDesign, family: Family, iterations: int = 25) -> np.ndarray:
    """Means of the fixed-effects-only GLM (log link), by iteratively reweighted least squares."""
    y, X = design.y, np.asarray(design.X, dtype=float)
    offset = design.offset if design.offset is not None else 0.0
    mu = family.start_mu(y)
    eta = np.log(mu)
    for _ in range(iterations):
        w = mu if family.name == "negative_binomial" else np.ones_like(mu)  # mu_eta^2 / v, up to scale
        z = eta - offset + (y - mu) / mu
        root = np.sqrt(w)
        beta = np.linalg.lstsq(X * root[:, None], z * root, rcond=None)[0]
        eta = X @ beta + offset
        mu = np.exp(eta)
    return mu


def moment_dispersion(family: Family, design: LmmDesign, mu: np.ndarray) -> float:
    """A moment estimate to start from: Gamma phi = mean squared relative residual; negative binomial
    k from the excess of the squared residuals over the Poisson variance."""
    y = design.y
    if family.name == "gamma":
        return float(max(np.mean(((y - mu) / mu) ** 2), 1e-6))
    excess = float(np.sum((y - mu) ** 2 - mu))
    return float(np.sum(mu**2) / excess) if excess > 0 else 100.0


#: Links whose inverse can leave the family's range of means: (family, link) -> that range.
_UNBOUNDED_LINKS = {("binomial", "log"): "(0, 1)", ("binomial", "identity"): "(0, 1)",
                    ("poisson", "identity"): "(0, inf)", ("negative_binomial", "identity"): "(0, inf)",
                    ("gamma", "identity"): "(0, inf)", ("gamma", "inverse"): "(0, inf)"}


def link_range_hint(family: Family) -> str | None:
    """What to say when PIRLS fails with a link that does not keep the mean in its range (None otherwise).

    Examples
    --------
    >>> link_range_hint(get_family("poisson", "identity")).split(", and")[0]
    'the identity link does not keep the poisson mean in (0, inf)'
    >>> link_range_hint(get_family("poisson")) is None
    True
    """
    valid = _UNBOUNDED_LINKS.get((family.name, family.link.name))
    if valid is None:
        return None
    return (f"the {family.link.name} link does not keep the {family.name} mean in {valid}, and the fit failed where "
            "the linear predictor left it (as glmer's does). Use the canonical link, or give start= values "
            "(theta and beta) where the mean is valid for every row")


def check_start(start: Any, design: LmmDesign, has_dispersion: bool) -> dict[str, Any]:
    """``start`` as a dict of float arrays with the right sizes, or a TypeError/ValueError saying what is wrong.

    Examples
    --------
    >>> from multilevel.lmm.design import LmmDesign, RandomTerm
    >>> d = LmmDesign(np.zeros(4), np.ones((4, 1)), ["Intercept"],
    ...               [RandomTerm(np.array([0, 0, 1, 1]), np.ones((4, 1)), "g", ["Intercept"])])
    >>> check_start({"theta": [0.5]}, d, False)
    {'theta': array([0.5])}
    >>> check_start([0.5, 1.0], d, False)
    Traceback (most recent call last):
    ...
    TypeError: start must be a dict with keys 'theta', 'beta' (and 'dispersion' for gamma and negative binomial), not list
    """
    if start is None:
        return {}
    if not isinstance(start, dict):
        raise TypeError("start must be a dict with keys 'theta', 'beta' (and 'dispersion' for gamma and negative "
                        f"binomial), not {type(start).__name__}")
    sizes = {"theta": design.ntheta, "beta": len(design.fixed_names)}
    if has_dispersion:
        sizes["dispersion"] = 1
    out: dict[str, Any] = {}
    for key, value in start.items():
        if key not in sizes:
            raise ValueError(f"start has a key {key!r}; it takes {', '.join(repr(k) for k in sizes)}")
        try:
            array = np.atleast_1d(np.asarray(value, dtype=float))
        except (TypeError, ValueError):
            raise TypeError(f"start[{key!r}] must be numbers, not {value!r}") from None
        if array.shape != (sizes[key],) or not np.all(np.isfinite(array)):
            raise ValueError(f"start[{key!r}] must be {sizes[key]} finite number(s); got {value!r}")
        out[key] = array
    if has_dispersion and "dispersion" in out and not out["dispersion"][0] > 0:
        raise ValueError(f"start['dispersion'] must be positive, not {start['dispersion']!r}")
    return out


def fit_glmm_design(design: LmmDesign, family: Family | str = "binomial", *, link: Any = None, nagq: int = 1,
                    start: dict[str, Any] | None = None, **optimizer_options: Any) -> GlmmResult:
    """Fit a GLMM from a prepared :class:`~multilevel.lmm.design.LmmDesign` (array-level entry point).

    A design with an observation-level term (as many random effects as rows, e.g. ``(1 | obs)`` for
    overdispersion) must be built inside :func:`multilevel.lmm.design.without_residual_variance`: the
    design's own check otherwise refuses it, as a linear mixed model must.

    Examples
    --------
    >>> import numpy as np
    >>> from multilevel.lmm.design import LmmDesign, RandomTerm, without_residual_variance
    >>> rng = np.random.default_rng(1)
    >>> g, obs = np.repeat(np.arange(10), 8), np.arange(80)
    >>> y = rng.poisson(np.exp(1.0 + rng.normal(0, 0.5, 10)[g] + rng.normal(0, 0.4, 80))).astype(float)
    >>> with without_residual_variance():
    ...     design = LmmDesign(y, np.ones((80, 1)), ["Intercept"],
    ...                        [RandomTerm(obs, np.ones((80, 1)), "obs", ["Intercept"]),
    ...                         RandomTerm(g, np.ones((80, 1)), "g", ["Intercept"])])
    >>> fit = fit_glmm_design(design, "poisson")
    >>> fit.ngroups, [round(float(t), 2) for t in fit.theta]
    ({'obs': 80, 'g': 10}, [0.28, 0.26])
    """
    if link is None and str(getattr(family, "name", family)).lower() in ("gamma", "negative_binomial"):
        link = "log"  # the link glmm fits for the families with a dispersion
    family = get_family(family, link)
    _check_data(design, family)
    check_quadrature(design, nagq)
    if not design.fixed_names:
        raise ValueError("the fixed part has no columns (0 + or - 1 removed the intercept and nothing is left); "
                         "a GLMM needs at least one fixed effect: write e.g. 'y ~ 1 + (1 | g)'")
    try:
        objective = GlmmObjective(design, family, nagq)
        start = check_start(start, design, objective.has_dispersion)
        if objective.has_dispersion:
            objective.set_dispersion(float(start["dispersion"][0]) if "dispersion" in start
                                     else moment_dispersion(family, design, glm_means(design, family)))
        lower = theta_lower_bounds(design.terms)
        # theta starts and steps in the units of its terms' columns (a slope on a predictor of scale 1e4 has
        # theta entries 1e4 times smaller), as for linear mixed models
        scales = theta_scales(design.terms)
        theta0 = start.get("theta", theta_start(design.terms) * scales)
        # Stage 1 only needs to land near the optimum when stage 2 follows.
        loose = {"ftol_abs": 1e-2, "xtol_abs": 1e-2 * float(np.min(scales, initial=1.0))} if nagq > 0 else {}
        stage1 = minimize_bobyqa(objective.stage1, theta0, lower,
                                 **{"initial_step": 0.75 * scales, **loose, **optimizer_options})
        st = objective.pirls.run(stage1.final)
        optsum = stage1
        if nagq > 0:
            # Stage 2 over (theta, beta), beta in units of its stage-1 standard error so that one
            # trust-region radius fits every coordinate.
            beta0 = start.get("beta", st.beta)
            scale = np.sqrt(np.diag(rx_covariance(st.core, stage1.final)))
            nt = stage1.final.size

            p = beta0.size

            def scaled(x: np.ndarray) -> Any:
                params = np.concatenate([x[:nt], beta0 + scale * x[nt:nt + p], x[nt + p:]])  # tail: log dispersion
                if not objective.has_gradient:
                    return objective(params)
                value, grad = objective.value_and_gradient(params)
                return value, np.concatenate([grad[:nt], grad[nt:] * scale])

            x0 = np.concatenate([stage1.final, np.zeros(p)])
            bounds = np.concatenate([lower, np.full(p, -np.inf)])
            if objective.has_dispersion:  # re-estimated at the stage-1 modes; joins as its logarithm
                x0 = np.concatenate([x0, [np.log(moment_dispersion(family, design, st.mu))]])
                bounds = np.concatenate([bounds, [-np.inf]])
            if objective.has_gradient:
                optsum = minimize_quasi_newton(scaled, x0, [(lo if np.isfinite(lo) else None, None) for lo in bounds],
                                               with_gradient=True)
            else:  # derivative-free: forward-difference gradients of PIRLS-based deviances cost more evaluations
                units = np.concatenate([scales, np.ones(x0.size - nt)])
                options = {"initial_step": 0.2 * units, "ftol_abs": 1e-9, "xtol_abs": 1e-8 * float(np.min(units)),
                           **optimizer_options}
                optsum = minimize_bobyqa(scaled, x0, bounds, **options)
                if optsum.converged:  # BOBYQA stops on the deviance; Newton steps converge in the parameters
                    optsum = newton_polish(scaled, optsum, scale=units)
            x = optsum.final
            optsum.final = np.concatenate([x[:nt], beta0 + scale * x[nt:nt + p], x[nt + p:]])
        result = GlmmResult(design, family, objective, optsum, nagq, stage1)
    except PirlsError as exc:
        hint = link_range_hint(family)
        if hint is None:
            raise
        raise PirlsError(f"{hint} (PIRLS: {exc})") from exc
    if not result.converged:
        warnings.warn(f"the optimizer did not converge: {optsum.message}", ConvergenceWarning, stacklevel=3)
    if result.singular:
        warnings.warn("boundary (singular) fit: see result.singular and result.varcorr", SingularFitWarning,
                      stacklevel=3)
    eta = result.state.eta
    if (family.name == "binomial" and np.max(np.abs(eta)) > 25) or (family.name == "poisson" and np.min(eta) < -25):
        warnings.warn("fitted probabilities or rates numerically 0 or 1 occurred: the data may be (quasi-)"
                      "separated, and the estimates and standard errors of the affected effects are unreliable",
                      SeparationWarning, stacklevel=3)
    return result


def result_at_parameters(design: LmmDesign, theta: Any, beta: Any, family: Family | str = "binomial", *,
                         link: Any = None, nagq: int = 1, dispersion: float | None = None) -> GlmmResult:
    """A GLMM result at given ``(theta, beta)`` (and dispersion), without optimizing.

    The conditional modes, the objective and everything derived from them (``ranef``,
    ``ranef_condvar()``, ``fitted()``, the covariances) are evaluated there: to compare with another
    program at its own estimates, as :func:`multilevel.lmm.fit.result_at_theta` for linear mixed models.

    Parameters
    ----------
    design : LmmDesign
    theta, beta : array-like
        ``design.ntheta`` and ``len(design.fixed_names)`` values.
    family, link : as for :func:`glmm`
    nagq : int
        1 (Laplace) or more (adaptive Gauss-Hermite points).
    dispersion : float, optional
        Gamma phi or negative binomial shape k; required for those families, refused for the others.

    Returns
    -------
    GlmmResult

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> from multilevel.lmm import lmm_design
    >>> cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    >>> d = lmm_design("p ~ period + (1 | herd)", cbpp, weights="size")
    >>> res = result_at_parameters(d, [0.6], [-1.4, -1.0, -1.1, -1.6])
    >>> round(res.loglik, 4)
    -92.0639
    """
    if link is None and str(getattr(family, "name", family)).lower() in ("gamma", "negative_binomial"):
        link = "log"
    family = get_family(family, link)
    _check_data(design, family)
    check_quadrature(design, nagq)
    if nagq < 1:
        raise ValueError("result_at_parameters needs nagq >= 1 (nagq = 0 estimates beta by PIRLS)")
    theta = np.atleast_1d(np.asarray(theta, dtype=float))
    beta = np.atleast_1d(np.asarray(beta, dtype=float))
    if theta.size != design.ntheta or beta.size != len(design.fixed_names):
        raise ValueError(f"theta has {theta.size} values and beta {beta.size}; the model has {design.ntheta} "
                         f"theta parameters and {len(design.fixed_names)} fixed effects")
    objective = GlmmObjective(design, family, nagq)
    params = np.concatenate([theta, beta])
    if objective.has_dispersion:
        if dispersion is None or not dispersion > 0:
            raise ValueError(f"the {family.name} family needs a positive dispersion=, not {dispersion!r}")
        params = np.append(params, np.log(float(dispersion)))
    elif dispersion is not None:
        raise ValueError(f"the {family.name} family has no dispersion parameter")

    value = float(objective(params))

    def given(x: np.ndarray, lower: np.ndarray) -> OptSummary:
        return OptSummary(optimizer="none (parameters given)", initial=x, lower=lower, final=x, fmin=value, feval=1,
                          return_code=1, message="parameters given", elapsed=0.0, ftol_rel=0.0, ftol_abs=0.0,
                          xtol_abs=0.0, maxeval=0)

    lower = theta_lower_bounds(design.terms)
    optsum = given(params, np.concatenate([lower, np.full(params.size - theta.size, -np.inf)]))
    return GlmmResult(design, family, objective, optsum, nagq, given(theta, lower))


def glmm(formula: str, data: Any, *, family: Family | str = "binomial", link: Any = None, nagq: int = 1,
         weights: Any = None, offset: Any = None, start: dict[str, Any] | None = None,
         **optimizer_options: Any) -> GlmmResult:
    """Fit a generalized linear mixed model by Laplace or adaptive Gauss-Hermite quadrature.

    ``g(E[y | b]) = X beta + Z b (+ offset)``, ``b ~ N(0, Sigma_b)``, with
    lme4's formula syntax for the random part.

    Parameters
    ----------
    formula : str
        ``"y ~ x + (1 | g)"``; binomial responses are 0/1, proportions
        (with ``weights`` the numbers of trials) or ``cbind(successes, failures)``
        (as glmer's; the trials multiply ``weights``).
    data : DataFrame
    family : "binomial", "poisson", "negative_binomial" or "gamma" (or a Family)
        The negative binomial (NB2) shape ``k`` and the Gamma dispersion ``phi`` are
        estimated with the other parameters (``result.dispersion``).
    link : str, optional
        binomial: logit (default), probit, cloglog; poisson, negative_binomial and gamma: log.
    nagq : int
        1: Laplace; > 1: adaptive Gauss-Hermite points (one scalar term
        only); 0: stop after the first stage (beta from PIRLS).
    weights : str or array, optional
        Prior weights (binomial: trials).
    offset : str or array, optional
    start : dict, optional
        ``{"theta": ..., "beta": ...}`` (and ``"dispersion"`` for gamma and negative binomial).
    **optimizer_options
        ``ftol_rel``, ``ftol_abs``, ``xtol_abs``, ``initial_step``, ``maxeval`` for BOBYQA;
        ``verbose=True`` prints each evaluation of the objective (``verbose=2`` with the parameters).

    Returns
    -------
    GlmmResult

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    >>> fit = glmm("p ~ period + (1 | herd)", cbpp, family="binomial", weights="size")
    >>> round(float(fit.theta.iloc[0]), 3)
    0.642
    """
    check_optimizer_options(optimizer_options, glmm)
    require_binomial(formula, family)  # a cbind(successes, failures) response
    # No residual variance: an observation-level term (1 | obs) is identifiable, as in glmer.
    with without_residual_variance():
        design = lmm_design(formula, data, weights=weights, offset=offset, context=caller_context(), counts=True)
    return fit_glmm_design(design, family, link=link, nagq=nagq, start=start, **optimizer_options)
