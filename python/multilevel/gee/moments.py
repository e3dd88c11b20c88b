"""Moment estimators of the scale ``phi`` and the working-correlation
parameters from Pearson residuals: geepack's estimating equations, so that
estimates agree with it (see ``tests/reference/GEE_ESTIMATORS.md``).

With unweighted Pearson residuals ``r = (y - mu) / sqrt(v(mu))`` and prior
weights ``w``: ``phi = sum w r^2 / sum w``, and the correlation parameters
solve ``sum over pairs E' w_i w_k (r_i r_k / phi - rho_ik(alpha)) = 0``.
"""

from __future__ import annotations

import numpy as np

from multilevel import _core
from multilevel.clusters import ClusterLayout
from multilevel.correlation import CorrelationStructure


def estimate_scale(pearson: np.ndarray, weights: np.ndarray | None) -> float:
    """``phi = sum w r^2 / sum w`` (``pearson`` is the weighted ``sqrt(w) r``)."""
    total = pearson.shape[0] if weights is None else float(weights.sum())
    return float(pearson @ pearson) / total


def estimate_correlation(structure: CorrelationStructure, pearson: np.ndarray, weights: np.ndarray | None,
                         layout: ClusterLayout, scale: float) -> np.ndarray:
    """Correlation parameters from the within-cluster pair sums of the residuals.

    ``pearson`` is the weighted Pearson residual ``sqrt(w) r``; pairs are
    weighted by ``w_i w_k`` as in geepack.
    """
    if structure.pair_grouping is None:
        return np.zeros(0)
    T = max(layout.npositions, 1)
    args = (layout.order, layout.ptr, layout.position, structure.pair_grouping, T)
    if weights is None:
        sums, pair_weights = _core.pair_moments(pearson, *args)
    else:
        sums, _ = _core.pair_moments(pearson * np.sqrt(weights), *args)  # w r
        pair_weights, _ = _core.pair_moments(weights, *args)  # sum w_i w_k
    return structure.from_pair_sums(sums / scale, pair_weights, layout.npositions)
