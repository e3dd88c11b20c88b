"""Profile-likelihood intervals of mixed models with a residual correlation structure or variance function.

:class:`~multilevel.inference.profile.LmmProfile` with the residual
parameters (nlme's natural scale: the correlation parameters, then the
variance function's) after sigma. The deviance at a point is the ML deviance
of the rows whitened at its residual parameters plus the Jacobian term
(:class:`~multilevel.lmm.residual.ResidualLmmObjective`), so each change of
a residual parameter is one pass over the rows; a fixed effect's profile
refits the whole model with that effect moved into the response.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multilevel.gls.fit import UNCONSTRAINED_BOUND
from multilevel.inference.profile import LmmProfile
from multilevel.lmm.residual import ResidualLmmObjective, fit_residual_lmm


class ResidualLmmProfile(LmmProfile):
    """The profiled ML deviance of a :class:`~multilevel.lmm.residual.ResidualLmmResult` (an ML fit).

    Examples
    --------
    >>> from multilevel import lmm
    >>> from multilevel.datasets import load_dataset
    >>> fit = lmm("distance ~ age + (1 | Subject)", load_dataset("Orthodont"), corr="ar1", reml=False)
    >>> [p.name for p in ResidualLmmProfile(fit).parameters][:3]
    ['sd_(Intercept)|Subject', 'sigma', 'alpha']
    """

    def __init__(self, fit: Any) -> None:
        self._objective = ResidualLmmObjective(fit.design, fit.residual, False)
        self._nsdcor = fit._theta.size + 1
        super().__init__(fit)

    def _variance_layout(self) -> tuple[list[str], list[str], np.ndarray, list[tuple[float, float]]]:
        names, kinds, values, ranges = super()._variance_layout()
        fit = self.fit
        natural = np.concatenate([fit.corr_params, fit.variance_params.to_numpy()])
        extra = fit.structure.param_names(fit.residual.layout.npositions) + list(fit.variance_params.index)
        return (names + extra, kinds + ["residual"] * len(extra), np.concatenate([values, natural]),
                ranges + self._residual_ranges())

    def _residual_ranges(self) -> list[tuple[float, float]]:
        """Each residual parameter's range: its natural value at the ends of the unconstrained bound, the
        others at their estimates (a structure of several correlations: each in [-1, 1])."""
        residual, u = self.fit.residual, self.fit.residual_u
        out = []
        for i in range(u.size):
            if i < residual.ncorr and residual.ncorr > 1:
                out.append((-1.0, 1.0))
                continue
            ends = []
            for end in (-UNCONSTRAINED_BOUND, UNCONSTRAINED_BOUND):
                moved = u.copy()
                moved[i] = end
                ends.append(float(np.concatenate(residual.split(moved))[i]))
            out.append((min(ends), max(ends)))
        return out

    def _unconstrained(self, natural: np.ndarray) -> np.ndarray | None:
        residual = self.fit.residual
        corr, var = natural[:residual.ncorr], natural[residual.ncorr:]
        with np.errstate(all="ignore"):
            u = np.concatenate([residual.structure.to_unconstrained(corr, residual.max_size) if residual.ncorr
                                else np.zeros(0), residual.variance.to_unconstrained(var)])
        return u if np.all(np.isfinite(u)) else None

    def _deviance(self, x: np.ndarray) -> float:
        u = self._unconstrained(x[self._nsdcor:])
        built = None if u is None else self._objective.cached_core(u)
        if built is None:
            return np.inf
        core, jacobian = built
        return self._deviance_on(core, x[:self._nsdcor]) + jacobian

    def _refit_deviance(self, moved: Any, name: str) -> float:
        return float(fit_residual_lmm(moved, self.fit.residual, reml=False).objective)
