"""Fisher scoring for GEE over rows held in one or more parts.

Every quantity the iteration needs is a sum over clusters: the moment sums
behind ``phi`` and ``alpha``, the information ``H``, the quasi-score ``U``
and the meats. A :class:`GeeRows` says where the rows are (one in-memory
design, or chunks of a file or a Dask frame, each holding whole clusters)
and adds up per-part sums; the iteration itself is the same for all of them.

Each iteration makes two passes over the rows, as the in-memory algorithm
(geepack's) does: moments at the current ``beta``, then the scoring sums
with the ``phi`` and ``alpha`` they give.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

import numpy as np

from multilevel import _core
from multilevel.correlation import CorrelationStructure, Independence
from multilevel.families import Family
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
    mu, mu_eta = family.link.inverse_and_mu_eta(eta)
    wa = arrays_at_mean(design, family, eta, mu, mu_eta)
    design._working_cache = (key, wa)
    return wa


def arrays_at_mean(design: GeeDesign, family: Family, eta: np.ndarray, mu: np.ndarray,
                   mu_eta: np.ndarray) -> WorkingArrays:
    """:class:`WorkingArrays` from the linear predictor, the mean and ``dmu/deta``."""
    v = family.variance(mu)
    if not np.all(np.isfinite(mu)) or np.any(v <= 0):
        bad = int(np.flatnonzero(~np.isfinite(mu) | (v <= 0))[0])
        raise FloatingPointError(
            f"the mean left the {family.name} family's range at row {bad} (mu = {mu[bad]!r}) under the "
            f"{family.link.name} link; try another link or starting values"
        )
    root_w_over_v = np.sqrt(design.prior_weights() / v)
    return WorkingArrays(eta, mu, (design.y - mu) * root_w_over_v, mu_eta * root_w_over_v)


# ----- sums over the clusters of one part, and how two parts add up --------------------------------

@dataclass
class MomentSums:
    """Sums behind the moment estimates: ``sum w r^2``, ``sum w`` and the within-cluster pair sums."""

    squares: float
    weight: float
    pairs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def merge(self, other: MomentSums) -> MomentSums:
        self.squares += other.squares
        self.weight += other.weight
        self.pairs = self.pairs + other.pairs
        self.pair_weights = self.pair_weights + other.pair_weights
        return self


@dataclass
class ScoringSums:
    """``H``, ``U`` and a meat summed over clusters; the label of the first cluster that failed."""

    H: np.ndarray
    U: np.ndarray
    M: np.ndarray
    failed: Any = None

    def merge(self, other: ScoringSums) -> ScoringSums:
        self.H = self.H + other.H
        self.U = self.U + other.U
        self.M = self.M + other.M
        if self.failed is None:
            self.failed = other.failed
        return self


def merge(a: Any, b: Any) -> Any:
    """Add ``b``'s sums into ``a`` (the reduction of every pass)."""
    return a.merge(b)


def part_moments(design: GeeDesign, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                 npositions: int) -> MomentSums:
    """Moment sums of one part at ``beta``; pairs grouped as the structure needs, over ``npositions``."""
    wa = working_arrays(design, family, beta)
    weight = float(design.nobs if design.weights is None else design.weights.sum())
    out = MomentSums(float(wa.pearson @ wa.pearson), weight)
    if structure.pair_grouping is None:
        return out
    lay = design.layout
    args = (lay.order, lay.ptr, lay.position, structure.pair_grouping, max(npositions, 1))
    if design.weights is None:
        out.pairs, out.pair_weights = _core.pair_moments(wa.pearson, *args)
    else:
        out.pairs, _ = _core.pair_moments(wa.pearson * np.sqrt(design.weights), *args)  # w r
        out.pair_weights, _ = _core.pair_moments(design.weights, *args)  # sum w_i w_k
    return out


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

    def map_reduce(self, per_part: Callable[[GeeDesign], T], desc: str = "reading rows") -> T:
        raise NotImplementedError


class DesignRows(GeeRows):
    """All rows in one in-memory :class:`GeeDesign` (one part)."""

    def __init__(self, design: GeeDesign) -> None:
        self.design = design
        self.npositions = design.layout.npositions
        self.nclusters = design.layout.nclusters

    def map_reduce(self, per_part: Callable[[GeeDesign], T], desc: str = "reading rows") -> T:
        return per_part(self.design)


# ----- the iteration -------------------------------------------------------------------------------

@dataclass
class GeeEstimates:
    """Where Fisher scoring ended: estimates and the sums at them."""

    beta: np.ndarray
    scale: float
    corr_params: np.ndarray
    information: np.ndarray
    meat: np.ndarray
    n_iter: int
    converged: bool


def moment_estimates(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                     scale: float | None) -> tuple[float, np.ndarray]:
    """``phi`` (or the fixed ``scale``) and ``alpha`` at ``beta``: one pass."""
    sums = rows.map_reduce(partial(part_moments, family=family, structure=structure, beta=beta,
                                   npositions=rows.npositions), "moments")
    phi = sums.squares / sums.weight if scale is None else float(scale)
    if structure.pair_grouping is None:
        return phi, np.zeros(0)
    # geepack: alpha from the pair sums of r / sqrt(phi) with the estimated phi
    return phi, structure.from_pair_sums(sums.pairs / phi, sums.pair_weights, rows.npositions)


def scoring_sums(rows: GeeRows, family: Family, structure: CorrelationStructure, params: np.ndarray,
                 scale: float, beta: np.ndarray, meat: int = MEAT_ROBUST, h_full: np.ndarray | None = None,
                 independence_start: bool = False) -> ScoringSums:
    """``H``, ``U`` and the meat over all parts: one pass. A failed working correlation raises."""
    sums = rows.map_reduce(partial(part_sums, family=family, structure=structure, params=params, scale=scale,
                                   beta=beta, meat=meat, h_full=h_full, independence_start=independence_start),
                           "scoring")
    if sums.failed is not None:
        raise FloatingPointError(
            f"the {structure.name} working correlation with parameters {np.round(params, 6).tolist()} is not "
            f"positive definite for cluster {sums.failed}; try another correlation structure"
        )
    return sums


def start_beta(rows: GeeRows, family: Family, p: int, maxiter: int = 25) -> np.ndarray:
    """Coefficients of the independence GLM by iteratively reweighted least squares (geepack's start)."""
    beta = np.zeros(p)
    at = np.zeros(0)  # the first step starts from the family's starting means
    for _ in range(maxiter):
        # Working response z = eta - offset + (y - mu) / mu_eta; X'Wz is the "score" of a*z.
        sums = scoring_sums(rows, family, Independence(), np.zeros(0), 1.0, at, independence_start=True)
        new = np.linalg.solve(sums.H, sums.U)
        done = np.max(np.abs(new - beta)) <= 1e-4 * (1.0 + np.max(np.abs(new)))  # GEE steps polish it
        beta = at = new
        if done:
            break
    return beta


def fisher_scoring(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray, *,
                   scale: float | None, maxiter: int, tol: float) -> GeeEstimates:
    """Iterate ``beta += H^-1 U`` with ``phi`` and ``alpha`` re-estimated before each step.

    Stops when ``max |step| <= tol * (1 + max |beta|)``; then re-estimates
    ``phi`` and ``alpha`` at the final ``beta`` and forms the sums there, as geepack does.
    """
    converged = False
    n_iter = 0
    beta = np.asarray(beta, dtype=float).copy()
    for n_iter in range(1, maxiter + 1):
        phi, params = moment_estimates(rows, family, structure, beta, scale)
        sums = scoring_sums(rows, family, structure, params, phi, beta)
        step = np.linalg.solve(sums.H, sums.U)
        beta = beta + step
        if np.max(np.abs(step)) <= tol * (1.0 + np.max(np.abs(beta))):
            converged = True
            break
    phi, params = moment_estimates(rows, family, structure, beta, scale)
    sums = scoring_sums(rows, family, structure, params, phi, beta)
    return GeeEstimates(beta, phi, params, sums.H, sums.M, n_iter, converged)
