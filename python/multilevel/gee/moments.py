"""Moment estimates of the GEE scale ``phi`` and working-correlation parameters ``alpha``.

Two sets of estimators, both sums over clusters (so they add up over the
parts of chunked data):

``moments="geepack"`` (the default), geepack's (R package geepack, Halekoh,
Hojsgaard and Yan 2006), with ``r`` the Pearson residual ``(y - mu) /
sqrt(v(mu))`` and prior weights ``w``:

- ``phi = sum w r^2 / sum w`` (no ``- p``);
- exchangeable: ``alpha = sum w_j w_k e_j e_k / sum w_j w_k`` over all
  within-cluster pairs, ``e = r / sqrt(phi)``; unstructured the same per
  pair of positions, MDependent per lag; ar1 solves geepack's least-squares
  equation over all pairs (see :class:`~multilevel.correlation.Ar1`).
- A fixed ``scale`` replaces ``phi`` everywhere, in ``e`` too.

``moments="gee"``, those of R's gee package (Carey's ``Cgee``, gee 4.13,
``v4.4compat = FALSE``), which statsmodels' GEE shares where noted. Here
``r = sqrt(w) (y - mu) / sqrt(v(mu))`` (prior weights enter as R gee's
binomial trials do), ``N`` rows, ``p`` coefficients, ``K`` clusters of
``n_i`` rows:

- ``phi = sum r^2 / (N - p)``;
- exchangeable: ``alpha = sum_{j<k} r_j r_k / ((M - p) phi)``, ``M = sum
  n_i (n_i - 1) / 2`` the number of within-cluster pairs (statsmodels'
  ``Exchangeable`` too, unweighted);
- ar1 and ``MDependent(m)`` (R gee's ``"AR-M"`` with ``Mv = 1`` and
  ``"stat_M_dep"``): ``alpha_k = sum_i mean_k(r_i) / sum_i (r_i'r_i / n_i)``
  with ``mean_k(r_i)`` the mean of ``r_t r_{t+k}`` over cluster ``i``'s
  pairs at lag ``k``, both sums over the clusters that have such a pair
  (statsmodels' ``Autoregressive(grid=True)`` and ``Stationary(grid=True)``;
  R gee refuses clusters smaller than ``m + 1``). Lags are in positions:
  ``time=`` ranks, else the row order in the cluster, which is R gee's;
- unstructured: ``alpha_ab = sum_i r_ia r_ib / (K_2 phi_c)`` with ``K_2``
  the clusters of more than one row and ``phi_c = mean_i (r_i'r_i / n_i)``
  over all clusters (statsmodels' ``Unstructured`` instead divides each
  pair's sum by its count minus ``p`` and rescales to a correlation);
- with a fixed ``scale``, R gee fixes ``phi`` in the variance only: the
  exchangeable ``alpha`` still divides by the estimated ``phi`` (the other
  structures' ``alpha`` do not involve ``phi``). statsmodels' default for
  binomial and Poisson (``phi = 1``, ``alpha`` from the estimated ``phi``)
  is ``moments="gee", scale=1``.

Either way, an ``alpha`` outside the range where the working correlation
is positive definite is moved just inside it (:func:`keep_inside`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np

from multilevel import _core
from multilevel.correlation import (
    PAIRS_ALL,
    PAIRS_BY_POSITION,
    Ar1,
    CorrelationStructure,
    Exchangeable,
    MDependent,
    Unstructured,
    _lower_by_column,
)
from multilevel.families import Family
from multilevel.gee.design import GeeDesign
from multilevel.gee.scoring import GeeRows, working_arrays

#: Values of ``moments=``.
MOMENTS = ("geepack", "gee")
#: How far inside its bounds an exchangeable alpha, or the smallest eigenvalue of a shrunk table, is kept.
BOUND_MARGIN = 1e-4
#: The AR(1) alpha is kept inside [-edge, edge] (geepack's estimate already is, see correlation.py).
AR1_EDGE = 1.0 - 1e-6


class GeeCorrelationBoundWarning(UserWarning):
    """The moment estimate of the working correlation left the positive-definite range and was moved inside."""


def check_moments(moments: object) -> str:
    """``moments`` if it names an estimator set; a TypeError or ValueError naming the valid ones otherwise."""
    if not isinstance(moments, str):
        raise TypeError(f"moments must be one of {', '.join(map(repr, MOMENTS))}, not {type(moments).__name__}")
    if moments not in MOMENTS:
        raise ValueError(f"moments must be one of {', '.join(map(repr, MOMENTS))} (geepack's or R gee's moment "
                         f"estimators), not {moments!r}")
    return moments


def check_structure(structure: CorrelationStructure, moments: str) -> None:
    """Refuse a structure with parameters that R gee's estimators do not cover."""
    if moments == "gee" and structure.pair_grouping is not None and not isinstance(
            structure, (Exchangeable, Ar1, MDependent, Unstructured)):
        raise ValueError(f"moments='gee' has estimators for exchangeable, ar1, MDependent(m) and unstructured "
                         f"working correlations, not {structure.name!r}; use moments='geepack'")


# ----- sums over the clusters of one part -----------------------------------------------------------

@dataclass
class MomentSums:
    """Sums behind the moment estimates; every field adds over parts.

    geepack's: ``squares = sum w r^2``, ``weight = sum w`` and the grouped
    pair sums ``pairs`` / ``pair_weights``. R gee's also use the row count,
    per-cluster means (``lag_means[k]``, ``lag_squares[k]``: sums over the
    clusters with a lag-``k`` pair of their mean lag-``k`` product and of
    their mean square), ``cluster_squares = sum_i r_i'r_i / n_i``, and the
    numbers of clusters and of clusters with more than one row.
    """

    squares: float
    weight: float
    pairs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    pair_weights: np.ndarray = field(default_factory=lambda: np.zeros(0))
    rows: int = 0
    lag_means: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lag_squares: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cluster_squares: float = 0.0
    clusters: int = 0
    multi_row_clusters: int = 0

    def merge(self, other: MomentSums) -> MomentSums:
        self.squares += other.squares
        self.weight += other.weight
        self.pairs = self.pairs + other.pairs
        self.pair_weights = self.pair_weights + other.pair_weights
        self.rows += other.rows
        self.lag_means = self.lag_means + other.lag_means
        self.lag_squares = self.lag_squares + other.lag_squares
        self.cluster_squares += other.cluster_squares
        self.clusters += other.clusters
        self.multi_row_clusters += other.multi_row_clusters
        return self


def part_moments(design: GeeDesign, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                 npositions: int, moments: str = "geepack") -> MomentSums:
    """Moment sums of one part at ``beta``; pairs grouped as the structure needs, over ``npositions``."""
    wa = working_arrays(design, family, beta)
    if moments == "gee":
        return _gee_part_moments(design, structure, wa.pearson, npositions)
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


def _gee_part_moments(design: GeeDesign, structure: CorrelationStructure, r: np.ndarray,
                      npositions: int) -> MomentSums:
    """R gee's sums of one part; ``r`` the Pearson residuals with ``sqrt(w)``, in data row order."""
    lay = design.layout
    out = MomentSums(float(r @ r), float(design.nobs), rows=design.nobs)
    if structure.pair_grouping is None:
        return out
    sizes = np.diff(lay.ptr)
    square_means = np.bincount(lay.codes, weights=r * r, minlength=lay.nclusters) / np.maximum(sizes, 1)
    if isinstance(structure, (Ar1, MDependent)):
        nlags = 1 if isinstance(structure, Ar1) else structure.nparams(npositions)
        out.lag_means, out.lag_squares = _lag_means(r, lay.codes, lay.position, lay.nclusters, square_means,
                                                     nlags, max(npositions, 1))
        return out
    grouping = PAIRS_ALL if isinstance(structure, Exchangeable) else PAIRS_BY_POSITION
    out.pairs, out.pair_weights = _core.pair_moments(r, lay.order, lay.ptr, lay.position, grouping,
                                                     max(npositions, 1))
    out.cluster_squares = float(square_means.sum())
    out.clusters = int(sizes.size)
    out.multi_row_clusters = int(np.count_nonzero(sizes > 1))
    return out


def _lag_means(r: np.ndarray, codes: np.ndarray, position: np.ndarray, nclusters: int, square_means: np.ndarray,
               nlags: int, npositions: int) -> tuple[np.ndarray, np.ndarray]:
    """For lags ``k = 0..nlags`` (index 0 unused): the sum over clusters with a lag-``k`` pair of the mean
    of ``r_t r_{t+k}`` over those pairs, and of the cluster's mean square ``r'r / n``."""
    # A row is (cluster, position); its lag-k partner is the row at (cluster, position + k), if any.
    key = codes.astype(np.int64) * npositions + position
    srt = np.argsort(key, kind="stable")
    key, rs, cs, ps = key[srt], r[srt], codes[srt], position[srt]
    means, squares = np.zeros(nlags + 1), np.zeros(nlags + 1)
    for k in range(1, nlags + 1):
        at = np.minimum(np.searchsorted(key, key + k), key.size - 1)
        pair = (key[at] == key + k) & (ps + k < npositions)  # position + k past the end is the next cluster
        products = np.bincount(cs[pair], weights=rs[pair] * rs[at[pair]], minlength=nclusters)
        counts = np.bincount(cs[pair], minlength=nclusters)
        has = counts > 0
        means[k] = float(np.sum(products[has] / counts[has]))
        squares[k] = float(np.sum(square_means[has]))
    return means, squares


# ----- the estimates ---------------------------------------------------------------------------------

def moment_estimates(rows: GeeRows, family: Family, structure: CorrelationStructure, beta: np.ndarray,
                     scale: float | None, moments: str = "geepack") -> tuple[float, np.ndarray]:
    """``phi`` for the variance (the fixed ``scale`` when given) and ``alpha`` at ``beta``: one pass.

    ``alpha`` is the raw moment estimate (see :func:`keep_inside`).
    """
    sums = rows.map_reduce(partial(part_moments, family=family, structure=structure, beta=beta,
                                   npositions=rows.npositions, moments=moments), "moments")
    return estimates_from_sums(sums, structure, beta.size, scale, rows.npositions, moments)


def estimates_from_sums(sums: MomentSums, structure: CorrelationStructure, p: int, scale: float | None,
                        npositions: int, moments: str = "geepack") -> tuple[float, np.ndarray]:
    """``phi`` and the raw ``alpha`` from the moment sums of all parts (:func:`moment_estimates`)."""
    if moments == "gee":
        return _gee_estimates(sums, structure, p, scale, npositions)
    phi = sums.squares / sums.weight if scale is None else float(scale)
    if structure.pair_grouping is None:
        return phi, np.zeros(0)
    # geepack: alpha from the pair sums of r / sqrt(phi) with the phi in use (the fixed one too)
    return phi, structure.from_pair_sums(sums.pairs / phi, sums.pair_weights, npositions)


def _gee_estimates(sums: MomentSums, structure: CorrelationStructure, p: int, scale: float | None,
                   npositions: int) -> tuple[float, np.ndarray]:
    """R gee's ``phi`` and ``alpha`` from the summed moments (module docstring)."""
    phi = sums.squares / (sums.rows - p)
    variance_phi = phi if scale is None else float(scale)  # R gee: a fixed scale enters the variance only
    if structure.pair_grouping is None:
        return variance_phi, np.zeros(0)
    if isinstance(structure, (Ar1, MDependent)):
        means, squares = sums.lag_means[1:], sums.lag_squares[1:]
        return variance_phi, np.where(squares > 0, means / np.where(squares > 0, squares, 1.0), 0.0)
    if isinstance(structure, Exchangeable):
        npairs = float(sums.pair_weights[0])
        if npairs <= p:
            raise ValueError(f"moments='gee' divides the exchangeable correlation by the number of within-cluster "
                             f"pairs minus the {p} coefficients, but the data have {npairs:.0f} pair(s); use "
                             "moments='geepack'")
        return variance_phi, np.array([float(sums.pairs[0]) / ((npairs - p) * phi)])
    # unstructured: pair (s, t), s < t, at index s * T + t (as Unstructured.from_pair_sums)
    rows_, cols = _lower_by_column(npositions)
    denominator = sums.multi_row_clusters * sums.cluster_squares / sums.clusters
    if not denominator > 0:
        return variance_phi, np.zeros(rows_.size)
    return variance_phi, sums.pairs[cols * npositions + rows_] / denominator


# ----- keeping alpha where the working correlation is positive definite ----------------------------

def keep_inside(structure: CorrelationStructure, alpha: np.ndarray, max_cluster_size: int) -> np.ndarray:
    """``alpha`` moved just inside its structure's bounds where they are known in closed form.

    Exchangeable: ``-1/(m - 1) < alpha < 1`` for the largest cluster of
    ``m`` rows (kept ``BOUND_MARGIN`` inside); ar1: ``|alpha| <= AR1_EDGE``.
    Other structures are checked cluster by cluster when the correlation is
    used (:func:`shrink_toward_independence`). Values inside are returned
    unchanged (the same array).
    """
    if isinstance(structure, Exchangeable) and alpha.size:
        low = -1.0 / (max_cluster_size - 1) + BOUND_MARGIN if max_cluster_size > 1 else -1.0 + BOUND_MARGIN
        high = 1.0 - BOUND_MARGIN
        if not low <= alpha[0] <= high:
            return np.array([min(max(float(alpha[0]), low), high)])
    elif isinstance(structure, Ar1) and alpha.size and not abs(alpha[0]) <= AR1_EDGE:
        return np.array([min(max(float(alpha[0]), -AR1_EDGE), AR1_EDGE)])
    return alpha


def shrink_toward_independence(structure: CorrelationStructure, alpha: np.ndarray, npositions: int) -> np.ndarray:
    """``s alpha``, ``0 < s < 1``, whose correlation table over all positions has smallest eigenvalue
    ``BOUND_MARGIN``: for the structures linear in ``alpha`` (MDependent, unstructured, exchangeable) the
    table is then ``(1 - s) I + s R(alpha)``, and every cluster's matrix, a principal submatrix, is
    positive definite."""
    lowest = float(np.linalg.eigvalsh(structure.table(alpha, max(npositions, 1)))[0])
    if lowest >= BOUND_MARGIN:
        return alpha * (1.0 - BOUND_MARGIN)  # a cluster failed at the edge: step back a little
    return alpha * ((1.0 - BOUND_MARGIN) / (1.0 - lowest))
