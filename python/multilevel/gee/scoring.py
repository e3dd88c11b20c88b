"""The sums of GEE Fisher scoring over rows held in one or more parts.

Every quantity the iteration needs is a sum over clusters: the moment sums
behind ``phi`` and ``alpha`` (:mod:`multilevel.gee.moments`), the
information ``H``, the quasi-score ``U`` and the meats (here). A
:class:`GeeRows` says where the rows are (one in-memory design, or chunks of
a file or a Dask frame, each holding whole clusters) and adds up per-part
sums; the iteration (:mod:`multilevel.gee.iteration`) is the same for all
of them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from multilevel import _core
from multilevel.correlation import CorrelationStructure
from multilevel.families import Family, core_codes
from multilevel.gee.design import GeeDesign

T = TypeVar("T")
MEAT_ROBUST, MEAT_BIAS_REDUCED, MEAT_JACKKNIFE = 0, 1, 2


@dataclass
class WorkingArrays:
    """Per-row quantities at one ``beta`` (data row order)."""

    eta: np.ndarray
    mu: np.ndarray
    pearson: np.ndarray  # (y - mu) sqrt(w / v(mu))
    root_info: np.ndarray  # (dmu/deta) sqrt(w / v(mu))


def working_arrays(design: GeeDesign, family: Family, beta: np.ndarray) -> WorkingArrays:
    """Means, Pearson residuals and whitened derivatives at ``beta`` (with ``phi = 1``).

    The last result is kept on the design: the moments and the scoring sums
    of one iteration are taken at the same ``beta``.
    """
    # Keyed by the family itself (compared by value: an id could be reused by another family) and beta's bytes.
    key = (family, np.asarray(beta, dtype=float).tobytes())
    cached = getattr(design, "_working_cache", None)
    if cached is not None and cached[0][1] == key[1] and cached[0][0] == family:
        return cached[1]
    eta = design.X @ beta + design.offset_or_zero()
    codes = core_codes(family)
    if codes is None or family.name == "negative_binomial":  # the core's GEE arrays take no NB shape
        mu, mu_eta = family.link.inverse_and_mu_eta(eta)
        wa = arrays_at_mean(design, family, eta, mu, mu_eta)
    else:  # the same arrays in one compiled pass over the rows
        weights = np.zeros(0) if design.weights is None else design.weights
        mu, pearson, root_info, bad = _core.gee_working_arrays(eta, design.y, weights, *codes)
        if bad >= 0:
            raise _outside_range(family, int(bad), mu[bad])
        wa = WorkingArrays(eta, mu, pearson, root_info)
    design._working_cache = (key, wa)
    return wa


def _outside_range(family: Family, row: int, mu: float) -> FloatingPointError:
    return FloatingPointError(
        f"the mean left the {family.name} family's range at row {row} (mu = {mu!r}) under the "
        f"{family.link.name} link; try another link or starting values"
    )


def arrays_at_mean(design: GeeDesign, family: Family, eta: np.ndarray, mu: np.ndarray,
                   mu_eta: np.ndarray) -> WorkingArrays:
    """:class:`WorkingArrays` from the linear predictor, the mean and ``dmu/deta``."""
    v = family.variance(mu)
    if not np.all(np.isfinite(mu)) or np.any(v <= 0):
        bad = int(np.flatnonzero(~np.isfinite(mu) | (v <= 0))[0])
        raise _outside_range(family, bad, mu[bad])
    root_w_over_v = np.sqrt(design.prior_weights() / v)
    return WorkingArrays(eta, mu, (design.y - mu) * root_w_over_v, mu_eta * root_w_over_v)


# ----- sums over the clusters of one part, and how two parts add up --------------------------------

@dataclass
class ScoringSums:
    """``H``, ``U`` and a meat (None where only ``H`` and ``U`` were formed) summed over clusters; the label
    of the first cluster that failed."""

    H: np.ndarray
    U: np.ndarray
    M: np.ndarray | None
    failed: Any = None

    def merge(self, other: ScoringSums) -> ScoringSums:
        self.H = self.H + other.H
        self.U = self.U + other.U
        self.M = None if self.M is None or other.M is None else self.M + other.M
        if self.failed is None:
            self.failed = other.failed
        return self


def merge(a: Any, b: Any) -> Any:
    """Add ``b``'s sums into ``a`` (the reduction of every pass)."""
    return a.merge(b)


def part_sums(design: GeeDesign, family: Family, structure: CorrelationStructure, params: np.ndarray,
              scale: float, beta: np.ndarray, meat: int = MEAT_ROBUST, h_full: np.ndarray | None = None,
              independence_start: bool = False) -> ScoringSums:
    """``H``, ``U`` and the meat of one part.

    With ``independence_start``, the right-hand side is the working response
    of the independence GLM's IRLS step at ``beta`` (at the family's starting
    means when ``beta`` is empty), as geepack's start.
    """
    if independence_start:
        if beta.size == 0:
            mu = family.start_mu(design.y)
            eta = family.link.link(mu)
            wa = arrays_at_mean(design, family, eta, mu, family.link.mu_eta(eta))
        else:
            wa = working_arrays(design, family, beta)
        residual = wa.root_info * (wa.eta - design.offset_or_zero()) + wa.pearson
    else:
        wa, residual = working_arrays(design, family, beta), None
    lay = design.layout
    root_scale = np.sqrt(scale)
    e = (wa.pearson if residual is None else residual) / root_scale
    p = design.X.shape[1]
    out = _core.cluster_sums(design.X, wa.root_info / root_scale, e, lay.order, lay.ptr, lay.position,
                             *structure.core_arguments(params, lay.npositions), meat,
                             np.zeros((p, p)) if h_full is None else h_full)
    failed = None if out["failed_cluster"] < 0 else design.cluster_labels[out["failed_cluster"]]
    return ScoringSums(np.asarray(out["H"]), np.asarray(out["U"]), np.asarray(out["M"]), failed)


def part_quasi_loglik(design: GeeDesign, family: Family, beta: np.ndarray) -> float:
    """``sum w Q(mu; y)`` of one part."""
    q = family.quasi_loglik(design.y, working_arrays(design, family, beta).mu)
    return float(design.prior_weights() @ q)


class GeeRows:
    """Where the rows of a GEE are. :meth:`map_reduce` applies a per-part function and adds the results
    (with their ``merge``), in the order of the parts."""

    name: str = "the data"
    npositions: int
    nclusters: int
    max_cluster_size: int

    def map_reduce(self, per_part: Callable[[GeeDesign], T], desc: str = "reading rows") -> T:
        raise NotImplementedError


class DesignRows(GeeRows):
    """All rows in one in-memory :class:`GeeDesign` (one part)."""

    def __init__(self, design: GeeDesign) -> None:
        self.design = design
        self.npositions = design.layout.npositions
        self.nclusters = design.layout.nclusters
        self.max_cluster_size = design.max_cluster_size

    def map_reduce(self, per_part: Callable[[GeeDesign], T], desc: str = "reading rows") -> T:
        return per_part(self.design)


def scoring_sums(rows: GeeRows, family: Family, structure: CorrelationStructure, params: np.ndarray,
                 scale: float, beta: np.ndarray, meat: int = MEAT_ROBUST, h_full: np.ndarray | None = None,
                 independence_start: bool = False, check: bool = True) -> ScoringSums:
    """``H``, ``U`` and the meat over all parts: one pass. A working correlation that is not positive
    definite for some cluster raises, unless ``check`` is False (then ``failed`` names the cluster)."""
    sums = rows.map_reduce(partial(part_sums, family=family, structure=structure, params=params, scale=scale,
                                   beta=beta, meat=meat, h_full=h_full, independence_start=independence_start),
                           "scoring")
    return check_positive_definite(sums, structure, params) if check else sums


def check_positive_definite(sums: ScoringSums, structure: CorrelationStructure, params: np.ndarray) -> ScoringSums:
    """``sums``, or a FloatingPointError naming the first cluster whose working correlation failed."""
    if sums.failed is not None:
        raise FloatingPointError(
            f"the {structure.name} working correlation with parameters {np.round(params, 6).tolist()} is not "
            f"positive definite for cluster {sums.failed}; try another correlation structure"
        )
    return sums


@dataclass
class FinalSums:
    """Sums at the estimates beyond ``H``: meats by covariance kind, and ``sum w Q(mu; y)`` when asked for."""

    meats: dict[str, np.ndarray] = field(default_factory=dict)
    quasi_loglik: float | None = None

    def merge(self, other: FinalSums) -> FinalSums:
        for kind, m in other.meats.items():
            self.meats[kind] = self.meats[kind] + m if kind in self.meats else m
        if other.quasi_loglik is not None:
            self.quasi_loglik = (self.quasi_loglik or 0.0) + other.quasi_loglik
        return self


#: Meat kinds of the covariances, as :func:`part_sums` takes them.
MEAT_KINDS = {"robust": MEAT_ROBUST, "bias_reduced": MEAT_BIAS_REDUCED, "jackknife": MEAT_JACKKNIFE}


def part_final_sums(design: GeeDesign, family: Family, structure: CorrelationStructure, params: np.ndarray,
                    scale: float, beta: np.ndarray, h_full: np.ndarray, kinds: tuple[str, ...],
                    quasi_loglik: bool) -> FinalSums:
    """One part's :class:`FinalSums`: the meats of ``kinds`` and, if asked, the quasi-likelihood."""
    out = FinalSums(quasi_loglik=part_quasi_loglik(design, family, beta) if quasi_loglik else None)
    for kind in kinds:
        out.meats[kind] = part_sums(design, family, structure, params, scale, beta, meat=MEAT_KINDS[kind],
                                    h_full=h_full).M
    return out


def final_sums(rows: GeeRows, family: Family, structure: CorrelationStructure, params: np.ndarray, scale: float,
               beta: np.ndarray, h_full: np.ndarray, kinds: tuple[str, ...], quasi_loglik: bool = False) -> FinalSums:
    """The meats of ``kinds`` (and the quasi-likelihood) at the estimates, in one pass over the rows.

    For data read in chunks this is the pass that makes everything a result
    needs and cannot make later without the rows.
    """
    return rows.map_reduce(partial(part_final_sums, family=family, structure=structure, params=params, scale=scale,
                                   beta=beta, h_full=h_full, kinds=kinds, quasi_loglik=quasi_loglik), "covariances")


_MOVED = {"GeeEstimates": "iteration", "fisher_scoring": "iteration", "start_beta": "iteration",
          "MomentSums": "moments", "part_moments": "moments", "moment_estimates": "moments"}


def __getattr__(name: str) -> Any:
    """Names that moved to :mod:`multilevel.gee.iteration` and :mod:`multilevel.gee.moments`, for code that
    still imports them from here (imported lazily: those modules import this one)."""
    if name in _MOVED:
        import importlib

        return getattr(importlib.import_module(f"multilevel.gee.{_MOVED[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
