"""Profile-likelihood confidence intervals of linear mixed models, as lme4's ``profile``/``confint``.

As lme4 does, the profiles are of the ML deviance (a REML fit is refitted
by ML on the same core first), in the standard-deviation / correlation
scale of the random effects, then sigma, then the fixed effects:

* a variance parameter is fixed at a value and the deviance minimized over
  the others (``beta`` is always profiled out by the core's solve);
* a fixed effect ``beta_j`` is fixed by moving ``beta_j x_j`` into the
  offset and minimizing the profiled ML deviance over theta.

``zeta(v) = sign(v - estimate) sqrt(deviance(v) - deviance_min)``; the
interval at level ``1 - alpha`` is where ``zeta = -/+ z_{1-alpha/2}``,
found by bracketing outwards from the estimate and Brent's method (lme4
interpolates a spline through a grid instead). A standard deviation whose
profile stays below the level down to zero gets the lower bound 0, as in
lme4; a bound the profile cannot reach (a flat likelihood) is NaN with a
warning.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.errors import require_rows
from multilevel.inference.satterthwaite import varpar_deviance
from multilevel.optimize import minimize_bobyqa

MAX_BRACKET_STEPS = 40  # outward steps growing by 1.6: about 1e8 standard errors before giving up


def _illinois(f: Callable[[float], float], a: float, fa: float, b: float, fb: float, tol: float,
              max_iter: int = 60) -> float:
    """Root of ``f`` in ``[a, b]`` (``fa * fb <= 0``, both known) by the Illinois variant of regula falsi:
    superlinear, and no evaluation spent on the ends (each one is an inner optimization here)."""
    if fb == 0:
        return b
    for _ in range(max_iter):
        c = b - fb * (b - a) / (fb - fa)
        fc = f(c)
        if abs(fc) < 1e-8 or abs(c - b) < tol:
            return c
        if fc * fb < 0:
            a, fa = b, fb
        else:
            fa *= 0.5  # the end that stays: halve its weight so it moves too
        b, fb = c, fc
    return b


class ProfileWarning(UserWarning):
    """A profile could not reach the requested level on one side."""


@dataclass(frozen=True)
class ProfiledParameter:
    """One parameter of the profile: lme4's name, its estimate, its range and a step scale."""

    name: str
    kind: str  # "sd", "cor", "sigma" or "beta"
    index: int  # position among the variance parameters, or the fixed-effect column
    estimate: float
    low: float
    high: float
    scale: float


def _psd_cholesky(r: np.ndarray) -> np.ndarray | None:
    """Lower factor of a correlation matrix that may be singular; None if it is not positive semi-definite."""
    p = r.shape[0]
    low = np.zeros((p, p))
    for j in range(p):
        d = r[j, j] - low[j, :j] @ low[j, :j]
        if d < -1e-10:
            return None
        low[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, p):
            num = r[i, j] - low[i, :j] @ low[j, :j]
            if low[j, j] > 1e-12:
                low[i, j] = num / low[j, j]
            elif abs(num) > 1e-8:
                return None
    return low


def _positions(p: int) -> list[tuple[int, int]]:
    """Lower-triangle positions by column: theta's (and the sd/cor vector's) order within a term."""
    return [(r, c) for c in range(p) for r in range(c, p)]


def sdcor_from_theta(terms: list[Any], theta: np.ndarray, sigma: float) -> np.ndarray:
    """Standard deviations and correlations of each term (theta's order), then sigma."""
    out, i = [], 0
    for t in terms:
        lam = np.zeros((t.p, t.p))
        for r, c in _positions(t.p):
            lam[r, c] = theta[i]
            i += 1
        cov = lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        for r, c in _positions(t.p):
            if r == c:
                out.append(sigma * sd[r])
            else:
                out.append(cov[r, c] / (sd[r] * sd[c]) if sd[r] > 0 and sd[c] > 0 else 0.0)
    return np.array(out + [sigma])


def theta_from_sdcor(terms: list[Any], sdcor: np.ndarray) -> np.ndarray | None:
    """Theta for standard deviations and correlations (sigma last); None if a correlation matrix is not valid."""
    sigma, theta, i = sdcor[-1], [], 0
    for t in terms:
        sd, corr = np.zeros(t.p), np.eye(t.p)
        for r, c in _positions(t.p):
            if r == c:
                sd[r] = sdcor[i]
            else:
                corr[r, c] = corr[c, r] = sdcor[i]
            i += 1
        chol = _psd_cholesky(corr)
        if chol is None:
            return None
        lam = sd[:, None] * chol / sigma
        theta.extend(lam[r, c] for r, c in _positions(t.p))
    return np.array(theta)


def _label(column: str) -> str:
    return "(Intercept)" if column == "Intercept" else column


def variance_parameter_names(terms: list[Any]) -> list[str]:
    """lme4's ``oldNames = FALSE`` names: ``sd_(Intercept)|Subject``, ``cor_Days.(Intercept)|Subject``, ``sigma``."""
    names = []
    for t in terms:
        for r, c in _positions(t.p):
            if r == c:
                names.append(f"sd_{_label(t.columns[r])}|{t.group}")
            else:
                names.append(f"cor_{_label(t.columns[r])}.{_label(t.columns[c])}|{t.group}")
    return names + ["sigma"]


class Profile:
    """A profiled deviance: subclasses say how ``zeta`` is computed along each parameter.

    ``parameters`` lists the :class:`ProfiledParameter` in lme4's order;
    ``traces`` holds, per parameter, the values visited and their ``zeta``;
    :meth:`conf_int` finds the interval at any level.
    """

    parameters: list[ProfiledParameter]
    base: float

    def __init__(self, parameters: list[ProfiledParameter], base: float) -> None:
        self.parameters = parameters
        self.base = base
        self.traces: dict[str, list[tuple[float, float]]] = {p.name: [(p.estimate, 0.0)] for p in parameters}
        self._starts: dict[str, np.ndarray] = {}

    def _parameter_zeta(self, p: ProfiledParameter, value: float) -> float:
        raise NotImplementedError

    def _zeta(self, p: ProfiledParameter, value: float, deviance: float) -> float:
        z = float(np.sign(value - p.estimate) * np.sqrt(max(deviance - self.base, 0.0)))
        self.traces[p.name].append((float(value), z))
        return z

    def zeta(self, name: str, value: float) -> float:
        """Signed square root of the deviance increase with parameter ``name`` fixed at ``value``."""
        return self._parameter_zeta(self._parameter(name), value)

    def _parameter(self, name: str) -> ProfiledParameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"{name!r} is not a profiled parameter; they are {[p.name for p in self.parameters]}")

    # ----- intervals -----------------------------------------------------------
    def _bound(self, p: ProfiledParameter, side: int, target: float) -> float:
        """Where zeta reaches ``side * target`` (side -1: below the estimate, +1: above)."""
        edge = p.low if side < 0 else p.high
        if p.estimate == edge:
            return edge  # on the boundary (a singular fit): the interval starts there, as lme4's
        self._starts.pop(p.name, None)

        def f(v: float) -> float:
            return self.zeta(p.name, v) - side * target

        # zeta is close to linear in a fixed effect and smooth elsewhere: the first step is the
        # Wald guess, then outward by 1.6 until the sign changes.
        inner, f_inner, step = p.estimate, -side * target, target * p.scale
        for _ in range(MAX_BRACKET_STEPS):
            outer = p.estimate + side * step
            if (side < 0 and outer <= edge) or (side > 0 and outer >= edge):
                outer = edge
            f_outer = f(outer)
            if np.isnan(f_outer):
                break
            if f_outer * f_inner <= 0:
                return _illinois(f, inner, f_inner, outer, f_outer, tol=1e-7 * p.scale)
            if outer == edge:
                return edge  # the profile stays inside the level up to the parameter's bound
            inner, f_inner, step = outer, f_outer, step * 1.6
        warnings.warn(f"the profile of {p.name} does not reach the requested level "
                      f"{'below' if side < 0 else 'above'} the estimate (a flat likelihood): its bound is NaN",
                      ProfileWarning, stacklevel=4)
        return np.nan

    def conf_int(self, level: float = 0.95, parameters: list[str] | None = None) -> pd.DataFrame:
        """Profile intervals at ``level``, one row per parameter in lme4's order."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level must be in (0, 1), not {level}")
        target = float(np.sqrt(stats.chi2.ppf(level, 1)))
        chosen = [p for p in self.parameters if parameters is None or p.name in parameters]
        rows = {p.name: [self._bound(p, -1, target), self._bound(p, +1, target)] for p in chosen}
        lo, hi = (1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0
        return pd.DataFrame.from_dict(rows, orient="index", columns=[f"{lo:.3g}", f"{hi:.3g}"])

    def trace(self, name: str) -> pd.DataFrame:
        """The values visited for parameter ``name`` and their zeta, sorted by value."""
        points = sorted(set(self.traces[self._parameter(name).name]))
        return pd.DataFrame(points, columns=["value", "zeta"])


class LmmProfile(Profile):
    """The profiled ML deviance of a linear mixed model (built by
    :meth:`multilevel.lmm.result.LmmResult.profile`)."""

    def __init__(self, fit: Any) -> None:
        self.fit = fit  # the ML fit
        names, kinds, values, ranges = self._variance_layout()
        self._sdcor = values
        scales = self._variance_scales()
        params = [ProfiledParameter(n, k, i, float(v), lo, hi, float(s))
                  for i, (n, k, v, (lo, hi), s) in enumerate(zip(names, kinds, values, ranges, scales))]
        bse = fit.bse.to_numpy()
        params += [ProfiledParameter(n, "beta", j, float(b), -np.inf, np.inf, float(se))
                   for j, (n, b, se) in enumerate(zip(fit.design.fixed_names, fit._beta, bse))]
        super().__init__(params, float(fit.objective))
        # Bounds of the variance parameters for the inner optimizations (sigma kept off 0).
        variances = [q for q in params if q.kind != "beta"]
        sigma = float(fit.sigma)
        self._lower = np.array([1e-8 * sigma if q.kind == "sigma" else q.low for q in variances])
        self._upper = np.array([q.high for q in variances])

    def _variance_layout(self) -> tuple[list[str], list[str], np.ndarray, list[tuple[float, float]]]:
        """Names, kinds, estimates and ranges of the variance parameters, in the profile's order."""
        terms = self.fit.design.terms
        names = variance_parameter_names(terms)
        kinds = ["cor" if n.startswith("cor_") else "sd" for n in names[:-1]] + ["sigma"]
        return names, kinds, sdcor_from_theta(terms, self.fit._theta, self.fit.sigma), [self._range(k) for k in kinds]

    # ----- deviance along one parameter --------------------------------------
    @staticmethod
    def _range(kind: str) -> tuple[float, float]:
        return {"sd": (0.0, np.inf), "cor": (-1.0, 1.0), "sigma": (0.0, np.inf)}[kind]

    def _deviance_on(self, core: Any, sdcor: np.ndarray) -> float:
        """The ML deviance of ``core`` at standard deviations and correlations, sigma last."""
        theta = theta_from_sdcor(self.fit.design.terms, sdcor)
        if theta is None or sdcor[-1] <= 0:
            return np.inf
        return varpar_deviance(core, np.append(theta, sdcor[-1]), False)

    def _deviance(self, sdcor: np.ndarray) -> float:
        return self._deviance_on(self.fit._core, sdcor)

    def _variance_scales(self) -> np.ndarray:
        """Wald-like standard errors of the sd/cor/sigma parameters, to size the first steps."""
        from multilevel.numdiff import hessian

        x0 = self._sdcor
        try:
            h = hessian(self._deviance, x0, 1e-3)
            cov = 2.0 * np.linalg.inv(h)
            se = np.sqrt(np.diag(cov))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            se = np.full(x0.size, np.nan)
        fallback = 0.1 * np.maximum(np.abs(x0), 0.05)
        return np.where(np.isfinite(se) & (se > 0), se, fallback)

    def _variance_zeta(self, p: ProfiledParameter, value: float) -> float:
        others = [i for i in range(self._sdcor.size) if i != p.index]
        lower, upper = self._lower[others], self._upper[others]
        start = self._starts.get(p.name, self._sdcor[others])

        def objective(x: np.ndarray) -> float:
            full = np.empty(self._sdcor.size)
            full[others], full[p.index] = x, value
            return self._deviance(full)

        if not others:
            dev = objective(np.zeros(0))
        else:
            step = np.maximum(0.1 * np.abs(start), 0.02 * np.maximum(self._sdcor[others], 1e-3))
            step = np.minimum(step, 0.25 * np.where(np.isfinite(upper - lower), upper - lower, np.inf))
            res = minimize_bobyqa(objective, np.clip(start, lower, upper), lower, upper=upper, initial_step=step,
                                  ftol_abs=1e-10, ftol_rel=1e-12)
            dev = res.fmin
            self._starts[p.name] = np.asarray(res.final)
        return self._zeta(p, value, dev)

    def _beta_zeta(self, p: ProfiledParameter, value: float) -> float:
        d = self.fit.design
        require_rows(d, "the profile of a fixed effect", "profile the variance parameters only: "
                     "conf_int(method='profile', parameters=[...]), or use Wald intervals for the fixed effects")
        keep = [j for j in range(d.X.shape[1]) if j != p.index]
        moved = dataclasses.replace(d, y=d.y - value * d.X[:, p.index], X=np.ascontiguousarray(d.X[:, keep]),
                                    fixed_names=[d.fixed_names[j] for j in keep])
        return self._zeta(p, value, self._refit_deviance(moved, p.name))

    def _refit_deviance(self, moved: Any, name: str) -> float:
        """The least ML deviance of a design with one fixed effect moved into the response."""
        from multilevel.lmm.fit import lmm_core
        from multilevel.lmm.theta import theta_lower_bounds

        core = lmm_core(moved)
        start = self._starts.get(name, self.fit._theta)
        res = minimize_bobyqa(lambda t: core.objective(t, False), start, theta_lower_bounds(moved.terms),
                              initial_step=np.maximum(0.1 * np.abs(start), 0.02), ftol_abs=1e-10, ftol_rel=1e-12)
        self._starts[name] = np.asarray(res.final)
        return float(res.fmin)

    def _parameter_zeta(self, p: ProfiledParameter, value: float) -> float:
        return self._beta_zeta(p, value) if p.kind == "beta" else self._variance_zeta(p, value)



class GlmmProfile(Profile):
    """The profiled deviance (Laplace or adaptive quadrature) of a GLMM with one scalar random-effect
    term, as lme4's ``profile`` of a ``glmer`` fit: the standard deviation of the term, then the
    fixed effects; each fixed at a value while the others are optimized."""

    def __init__(self, fit: Any) -> None:
        terms = fit.design.terms
        if len(terms) != 1 or terms[0].p != 1:
            raise ValueError("profile intervals of a GLMM are available for one scalar random-effect term "
                             "(1 | g), as lme4's; use Wald intervals (conf_int()) for this model")
        if fit.nagq < 1:
            raise ValueError("profile intervals need the Laplace or quadrature deviance (nagq >= 1); "
                             "this fit used nagq=0")
        if fit._log_dispersion.size:
            raise ValueError(f"profile intervals of a {fit.family.name} GLMM (with a dispersion parameter) "
                             "are not available; use Wald intervals")
        self.fit = fit
        self._objective = fit._at_optimum()
        self._x0 = np.concatenate([fit._theta, fit._beta])
        base = float(self._objective(self._x0))
        names = [variance_parameter_names(terms)[0]] + list(fit.design.fixed_names)
        scales = self._scales(base)
        params = [ProfiledParameter(names[0], "sd", 0, float(self._x0[0]), 0.0, np.inf, float(scales[0]))]
        params += [ProfiledParameter(n, "beta", i, float(v), -np.inf, np.inf, float(s))
                   for i, (n, v, s) in enumerate(zip(names[1:], self._x0[1:], scales[1:]), start=1)]
        super().__init__(params, base)

    def _scales(self, base: float) -> np.ndarray:
        """Standard errors from the Hessian of the deviance in (theta, beta), to size the first steps."""
        from multilevel.numdiff import hessian

        try:
            se = np.sqrt(np.diag(2.0 * np.linalg.inv(hessian(self._objective, self._x0, 1e-3))))
        except (np.linalg.LinAlgError, FloatingPointError, ValueError):
            se = np.full(self._x0.size, np.nan)
        return np.where(np.isfinite(se) & (se > 0), se, 0.1 * np.maximum(np.abs(self._x0), 0.05))

    def _parameter_zeta(self, p: ProfiledParameter, value: float) -> float:
        others = [i for i in range(self._x0.size) if i != p.index]
        lower = np.where(np.array(others) == 0, 0.0, -np.inf)  # theta >= 0
        start = self._starts.get(p.name, self._x0[others])

        def objective(x: np.ndarray) -> float:
            full = np.empty(self._x0.size)
            full[others], full[p.index] = x, value
            return float(self._objective(full))

        step = np.maximum(0.1 * np.abs(start), 0.02)
        res = minimize_bobyqa(objective, np.maximum(start, lower), lower, initial_step=step,
                              ftol_abs=1e-10, ftol_rel=1e-12)
        self._starts[p.name] = np.asarray(res.final)
        return self._zeta(p, value, res.fmin)
