"""Parametric bootstrap of linear mixed models, as lme4's ``bootMer``.

Each replicate simulates a response from the fitted model,
``y* = X beta + offset + sum_k Z_k b*_k + e*`` with ``b*_k ~ N(0, sigma^2 Lambda_k Lambda_k')``
per level and ``e* ~ N(0, sigma^2 / w)``, and refits it on the same design:
the fixed and random-effect columns are those of the fit (no formula, no
data frame, no pass over the source), only the response is new. Replicate
``i`` draws from its own stream, ``SeedSequence(seed).spawn(nsim)[i]``, and
fits repeat bit for bit, so the table depends on ``seed`` only, not on the
number of threads that fit the replicates.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.errors import require_rows

BOOT_KINDS = ("percentile", "basic", "normal")
# Below this many rows a replicate's solves are too short for threads to gain (measured on
# sleepstudy: 1,000 replicates 0.66 s on one thread, 1.06 s on two).
PARALLEL_ROWS = 50_000


class ResponseSimulator:
    """Draws responses from a fitted linear mixed model; what does not change between draws is kept.

    ``draw(rng)`` takes the random effects of every term (levels x p, in term
    order), then the residuals, from ``rng``: ``N(0, sigma^2 / w)`` per row, or
    ``noise(rng)`` where given (a residual correlation structure's draw).
    """

    def __init__(self, fit: Any, noise: Callable[[np.random.Generator], np.ndarray] | None = None) -> None:
        from multilevel.lmm.theta import term_lambdas

        d = fit.design
        self.mean = d.X @ fit._beta + (0.0 if d.offset is None else d.offset)
        self.sigma = fit.sigma
        self.terms = [(np.asarray(t.z).reshape(d.nobs, t.p), np.asarray(t.codes), t.nlevels, t.p, lam.T)
                      for t, lam in zip(d.terms, term_lambdas(d.terms, fit._theta))]
        noise_scale = fit.sigma if d.weights is None else fit.sigma / np.sqrt(d.weights)
        self.noise = noise if noise is not None else lambda rng: noise_scale * rng.standard_normal(d.nobs)

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        y = self.mean.copy()
        for z, codes, nlevels, p, lam_t in self.terms:
            b = self.sigma * rng.standard_normal((nlevels, p)) @ lam_t  # one draw per level
            y += np.einsum("ij,ij->i", z, b[codes])
        return y + self.noise(rng)


def default_statistic(fit: Any) -> pd.Series:
    """lme4's ``confint(method = "boot")`` statistics: sd/cor of the random effects, sigma, fixed effects."""
    from multilevel.inference.profile import variance_parameter_names

    names = variance_parameter_names(fit.design.terms) + list(fit.design.fixed_names)
    return pd.Series(_default_values(fit.design.terms, fit._theta, fit.sigma, fit._beta), index=names)


def _default_values(terms: list[Any], theta: np.ndarray, sigma: float, beta: np.ndarray) -> np.ndarray:
    from multilevel.inference.profile import sdcor_from_theta

    return np.concatenate([sdcor_from_theta(terms, theta, sigma), beta])


class BootstrapResult:
    """Replicates of a parametric bootstrap.

    Attributes
    ----------
    estimate : Series, the statistics of the original fit
    replicates : DataFrame, one row per replicate
    converged : (nsim,) bool, whether each replicate's optimizer converged
    seed : the seed the replicates were drawn from
    """

    def __init__(self, estimate: pd.Series, replicates: pd.DataFrame, converged: np.ndarray, seed: Any) -> None:
        self.estimate = estimate
        self.replicates = replicates
        self.converged = converged
        self.seed = seed

    @property
    def nsim(self) -> int:
        return len(self.replicates)

    def conf_int(self, level: float = 0.95, kind: str = "percentile") -> pd.DataFrame:
        """Bootstrap intervals per statistic.

        Parameters
        ----------
        level : float, default 0.95
        kind : {"percentile", "basic", "normal"}
            As ``boot.ci``'s ``perc``, ``basic`` and ``norm``: quantiles of the
            replicates; the estimate reflected about them; the estimate less
            the bootstrap bias, plus or minus normal quantiles times the
            replicates' standard deviation.
        """
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), not {level}")
        if kind not in BOOT_KINDS:
            raise ValueError(f"unknown kind {kind!r}; choose one of {list(BOOT_KINDS)}")
        a = (1.0 - level) / 2.0
        reps, est = self.replicates, self.estimate
        if kind == "normal":
            z = stats.norm.ppf(1.0 - a)
            centre, sd = 2.0 * est - reps.mean(), reps.std(ddof=1)
            lower, upper = centre - z * sd, centre + z * sd
        else:
            q_lo, q_hi = reps.quantile(a), reps.quantile(1.0 - a)
            lower, upper = (q_lo, q_hi) if kind == "percentile" else (2.0 * est - q_hi, 2.0 * est - q_lo)
        return pd.DataFrame({f"{a:.3g}": lower, f"{1.0 - a:.3g}": upper})

    def __repr__(self) -> str:
        return f"<BootstrapResult: {self.nsim} parametric replicates of {len(self.estimate)} statistics, seed={self.seed}>"


#: Refits a replicate's response: ``refit(y)`` gives its statistics and whether it converged.
Refit = Callable[[np.ndarray], tuple[np.ndarray, bool]]


def parametric_bootstrap(fit: Any, nsim: int, *, seed: Any = None, threads: int | None = None,
                         statistic: Callable[[Any], Any] | None = None, simulator: ResponseSimulator | None = None,
                         refit: Refit | None = None) -> BootstrapResult:
    """Simulate ``nsim`` responses from ``fit`` and refit each on its design (see the module notes).

    Parameters
    ----------
    fit : an :class:`~multilevel.lmm.result.LmmResult` fitted in memory
    nsim : number of replicates (at least 1)
    seed : anything :class:`numpy.random.SeedSequence` accepts
    threads : replicates fitted at once. Default: one for models under
        :data:`PARALLEL_ROWS` rows (their fits are bound by Python's
        interpreter lock, so threads only contend), else the package's thread count
    statistic : function of a replicate's result giving a Series or array
        (default: :func:`default_statistic`)
    simulator, refit : optional
        How responses are drawn and refitted, for models beyond independent residuals (default:
        :class:`ResponseSimulator` of ``fit`` and a refit of theta on the fit's core structure).
    """
    from multilevel.lmm.fit import lmm_core
    from multilevel.lmm.result import LmmResult
    from multilevel.lmm.theta import theta_lower_bounds
    from multilevel.optimize import minimize_bobyqa
    from multilevel.threads import get_num_threads

    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ValueError(f"nsim must be a positive integer, not {nsim!r}")
    require_rows(fit.design, "the bootstrap", "fit the rows in memory to bootstrap")
    streams = np.random.SeedSequence(seed).spawn(int(nsim))
    start, lower, reml = fit._theta, theta_lower_bounds(fit.design.terms), fit.reml
    simulator, terms = simulator or ResponseSimulator(fit), fit.design.terms

    def refit_theta(y: np.ndarray) -> tuple[np.ndarray, bool]:
        core = lmm_core(fit.design, response=y)
        # From the fit's theta with a smaller first step than a fresh fit: replicates lie near it.
        opt = minimize_bobyqa(lambda t: core.objective(t, reml), start, lower, initial_step=0.15)
        if statistic is None:  # the default statistics need one solve, not a result object
            sol = core.solve(opt.final, reml)
            values = _default_values(terms, opt.final, float(sol["sigma"]), np.asarray(sol["beta"]))
        else:
            design = dataclasses.replace(fit.design, y=y)
            values = np.asarray(statistic(LmmResult(design, core, reml, opt)), dtype=float)
        return values, opt.converged

    def replicate(stream: np.random.SeedSequence) -> tuple[np.ndarray, bool]:
        return (refit or refit_theta)(simulator.draw(np.random.default_rng(stream)))

    if threads is None:
        workers = get_num_threads() if fit.design.nobs >= PARALLEL_ROWS else 1
    else:
        workers = int(threads)
    if workers < 1:
        raise ValueError(f"threads must be at least 1, not {threads!r}")
    if workers == 1:
        out = [replicate(s) for s in streams]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:  # the core's solves release the GIL
            out = list(pool.map(replicate, streams))
    estimate = (default_statistic if statistic is None else statistic)(fit)
    names = estimate.index if isinstance(estimate, pd.Series) else [f"t{i}" for i in range(np.size(estimate))]
    replicates = pd.DataFrame(np.vstack([v for v, _ in out]), columns=names)
    converged = np.array([c for _, c in out])
    if not converged.all():
        warnings.warn(f"{int((~converged).sum())} of {nsim} bootstrap refits did not converge; their values are "
                      "kept (see result.converged)", RuntimeWarning, stacklevel=3)
    return BootstrapResult(pd.Series(np.asarray(estimate, dtype=float), index=names), replicates, converged, seed)
