"""Moment estimators of the scale ``phi`` and the working-correlation
parameters from Pearson residuals (the same estimators as geepack, so that
estimates agree with it; see ``tests/reference/GEE_ESTIMATORS.md``)."""

from __future__ import annotations

import numpy as np

from multilevel import _core
from multilevel.clusters import ClusterLayout
from multilevel.correlation import CorrelationStructure


def estimate_scale(pearson: np.ndarray, nparams: int) -> float:
    """``phi = sum r^2 / (N - p)`` over the Pearson residuals ``r = (y - mu) sqrt(w / v(mu))``."""
    dof = pearson.shape[0] - nparams
    if dof <= 0:
        raise ValueError(f"{pearson.shape[0]} rows cannot estimate the scale of a model with {nparams} coefficients")
    return float(pearson @ pearson) / dof


def estimate_correlation(structure: CorrelationStructure, pearson: np.ndarray, layout: ClusterLayout,
                         scale: float) -> np.ndarray:
    """Correlation parameters: the mean of ``r_i r_k / phi`` over each group of within-cluster pairs.

    Groups with no pair (no cluster has rows at that lag or position pair)
    get correlation 0.
    """
    if structure.pair_grouping is None:
        return np.zeros(0)
    sums, counts = _core.gee_pair_moments(pearson, layout.order, layout.ptr, layout.position,
                                          structure.pair_grouping, max(layout.npositions, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / (scale * np.maximum(counts, 1)), 0.0)
    return structure.from_pair_means(means, layout.npositions)
