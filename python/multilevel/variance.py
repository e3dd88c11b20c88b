"""Variance functions of GLS: the standard deviation of row ``i`` is
``sigma * g_i(delta)``, as nlme's ``varFunc`` classes.

- :class:`ConstantVariance`: ``g = 1``;
- :class:`VarIdent`: a separate ratio per level of a factor (the first level
  is the reference, ``g = 1``), like ``varIdent(form = ~ 1 | f)``;
- :class:`VarPower`: ``g = |v|^delta`` for a covariate ``v`` (``varPower(form = ~ v)``);
- :class:`VarExp`: ``g = exp(delta v)`` (``varExp(form = ~ v)``).

Each is a configuration object; :meth:`VarianceFunction.bind` attaches it to
the rows of a data set and returns a :class:`BoundVariance` that maps
parameters to ``g`` and back and forth to the unconstrained scale the
optimizer works on (nlme's: ``log`` ratios for VarIdent, ``delta`` itself
otherwise).

Examples
--------
>>> import pandas as pd, numpy as np
>>> df = pd.DataFrame({"sex": ["F", "M", "F", "M"], "age": [8.0, 10.0, 12.0, 14.0]})
>>> bound = VarIdent("sex").bind(df)
>>> bound.names, bound.sd_factors(np.array([1.5])).tolist()
(['M'], [1.0, 1.5, 1.0, 1.5])
>>> VarPower("age").bind(df).sd_factors(np.array([0.5])).round(4).tolist()
[2.8284, 3.1623, 3.4641, 3.7417]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import numpy as np
import pandas as pd

from multilevel.frames import require_columns


@dataclass(frozen=True)
class BoundVariance:
    """A variance function attached to data rows.

    Attributes
    ----------
    names : labels of the parameters
    start : starting parameters (constrained scale)
    sd_factors : params -> (n,) ``g_i``
    to_unconstrained, from_unconstrained : maps between the parameter scales
    """

    names: list[str]
    start: np.ndarray
    sd_factors: Callable[[np.ndarray], np.ndarray]
    to_unconstrained: Callable[[np.ndarray], np.ndarray]
    from_unconstrained: Callable[[np.ndarray], np.ndarray]

    @property
    def nparams(self) -> int:
        return len(self.names)


class VarianceFunction:
    """Base class of the variance functions."""

    #: Data columns the function reads.
    columns: tuple[str, ...] = ()
    #: Whether its covariate is the model's fitted values (bound by the fitting loop, not from data).
    uses_fitted: bool = False

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        raise NotImplementedError


@dataclass(frozen=True)
class ConstantVariance(VarianceFunction):
    """Homoscedastic rows: ``g = 1``."""

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        return BoundVariance([], np.zeros(0), partial(_constant_sd, len(data)), _identity, _identity)


@dataclass(frozen=True)
class VarIdent(VarianceFunction):
    """A standard-deviation ratio per level of ``factor``; the level of the first row is the reference (as nlme)."""

    factor: str

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return (self.factor,)

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        require_columns([self.factor], data, "VarIdent")
        codes, levels = pd.factorize(data[self.factor], sort=True)
        if len(levels) and codes[0] != 0:  # move the first row's level to the front
            first = codes[0]
            perm = np.r_[first, np.delete(np.arange(len(levels)), first)]
            codes = np.argsort(perm)[codes]
            levels = levels[perm]
        if len(levels) < 2:
            raise ValueError(f"VarIdent({self.factor!r}) needs a factor with at least two levels, "
                             f"not {len(levels)}")
        counts = np.bincount(codes, minlength=len(levels))
        if (counts < 2).any():
            lone = levels[int(np.flatnonzero(counts < 2)[0])]
            raise ValueError(f"VarIdent({self.factor!r}): level {lone!r} has one row, so its variance ratio cannot "
                             "be estimated apart from the residual; merge it with another level")

        sd = partial(_ratio_per_level_sd, codes)
        names = [str(int(v)) if isinstance(v, float) and float(v).is_integer() else str(v) for v in levels[1:]]
        return BoundVariance(names, np.ones(len(levels) - 1), sd, np.log, np.exp)


class CovariateVariance(VarianceFunction):
    """A variance function of one covariate; without one, of the fitted values (nlme's ``~ fitted(.)``).

    With the fitted values the model fixes the covariate at the current fit's
    fitted values, refits, and repeats until the parameters settle, as nlme does.
    """

    covariate: str | None = None

    @property
    def columns(self) -> tuple[str, ...]:  # type: ignore[override]
        return () if self.covariate is None else (self.covariate,)

    @property
    def uses_fitted(self) -> bool:
        return self.covariate is None

    def bind(self, data: pd.DataFrame) -> BoundVariance:
        if self.covariate is None:
            raise ValueError(f"{type(self).__name__}() of the fitted values is bound by the model that fits it "
                             "(bind_values); give a covariate to bind it to data")
        return self.bind_values(_numeric_column(data, self.covariate, type(self).__name__))

    def bind_values(self, v: np.ndarray) -> BoundVariance:
        raise NotImplementedError


@dataclass(frozen=True)
class VarPower(CovariateVariance):
    """``g = |v|^delta`` for the covariate ``covariate`` (default: the fitted values, nlme's ``varPower()``)."""

    covariate: str | None = None

    def bind_values(self, v: np.ndarray) -> BoundVariance:
        v = np.abs(np.asarray(v, dtype=float))
        if np.any(v == 0):
            what = repr(self.covariate) if self.covariate is not None else "the fitted values"
            raise ValueError(f"VarPower({what if self.covariate else ''}): the covariate is 0 at row "
                             f"{int(np.flatnonzero(v == 0)[0])}, where |v|^delta is 0 or undefined")
        return BoundVariance(["power"], np.zeros(1), partial(_exp_linear_sd, np.log(v)), _identity, _identity)


@dataclass(frozen=True)
class VarExp(CovariateVariance):
    """``g = exp(delta v)`` for the covariate ``covariate`` (default: the fitted values, nlme's ``varExp()``)."""

    covariate: str | None = None

    def bind_values(self, v: np.ndarray) -> BoundVariance:
        return BoundVariance(["expon"], np.zeros(1), partial(_exp_linear_sd, np.asarray(v, dtype=float)),
                             _identity, _identity)


# The sd_factors of the variance functions, as module functions bound with partial so they pickle.
def _constant_sd(n: int, params: np.ndarray) -> np.ndarray:
    return np.ones(n)


def _ratio_per_level_sd(codes: np.ndarray, params: np.ndarray) -> np.ndarray:
    return np.concatenate([[1.0], params])[codes]


def _exp_linear_sd(v: np.ndarray, params: np.ndarray) -> np.ndarray:
    """``exp(delta v)``; with ``v = log|x|`` that is VarPower's ``|x|^delta``."""
    return np.exp(params[0] * v)


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def _numeric_column(data: pd.DataFrame, name: str, what: str) -> np.ndarray:
    require_columns([name], data, what)
    if not pd.api.types.is_numeric_dtype(data[name]):
        raise ValueError(f"{what}({name!r}) needs a numeric covariate, not {data[name].dtype}")
    return data[name].to_numpy(dtype=float)


def get_variance(variance: VarianceFunction | None) -> VarianceFunction:
    """A variance function, ``None`` meaning constant."""
    if variance is None:
        return ConstantVariance()
    if not isinstance(variance, VarianceFunction):
        raise ValueError(f"variance must be VarIdent(f), VarPower(x), VarExp(x) or None, not {variance!r}")
    return variance
