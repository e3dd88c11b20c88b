"""Fit ``y - X b0`` instead of ``y``: the same model, with fewer digits lost.

The profiled deviance takes the penalized residual sum of squares from the
last diagonal entry of the Cholesky factor of ``[Z X y]'W[Z X y]``, that is
``y'Wy`` minus the squares of the other entries of its row. When ``y`` has a
large mean (heights near 150 cm) ``y'Wy`` is many times the residual sum, and
the subtraction loses those digits: on Oxboys the deviance is then noisy at
1e-9, which limits the parameters to about 1e-5 however the optimizer
converges. Subtracting a least-squares fit ``X b0`` from ``y`` first leaves
the model unchanged (beta shifts by ``b0``, everything else is invariant) and
``y'Wy`` small. ``b0`` needs only to be close to the fixed-effects estimate,
so it comes from a few thousand evenly spaced rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Rows used for the least-squares shift (evenly spaced, so the choice is deterministic).
SHIFT_ROWS = 4096


def response_shift(y: np.ndarray, X: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares coefficients ``b0`` of ``y`` on ``X`` from at most :data:`SHIFT_ROWS` rows.

    Parameters
    ----------
    y : (n,) response (offset already subtracted)
    X : (n, p) fixed-effects columns
    weights : (n,) prior weights, or None

    Returns
    -------
    (p,) array; zeros when ``X`` has no columns or the sampled rows do not determine ``b0``.

    Examples
    --------
    >>> X = np.column_stack([np.ones(5), np.arange(5.0)])
    >>> np.round(response_shift(150 + 2 * np.arange(5.0), X), 12).tolist()
    [150.0, 2.0]
    """
    n, p = X.shape
    if p == 0 or n == 0:
        return np.zeros(p)
    rows = np.unique(np.linspace(0, n - 1, min(n, SHIFT_ROWS)).astype(np.intp))
    xs, ys = X[rows], y[rows]
    if weights is not None and len(weights):
        root = np.sqrt(np.asarray(weights, dtype=float)[rows])
        xs, ys = xs * root[:, None], ys * root
    coef, _, rank, _ = np.linalg.lstsq(xs, ys, rcond=None)
    return coef if rank == p and np.all(np.isfinite(coef)) else np.zeros(p)


class ShiftedCore:
    """An ``LmmCore`` built on ``y - X shift`` that reports ``beta`` for ``y``.

    Every other method and result of the core (objective, theta, sigma,
    conditional modes and variances, RX) is the same for both responses, so
    they pass through unchanged.

    Examples
    --------
    >>> from multilevel.datasets import load_dataset
    >>> from multilevel.lmm import lmm_design
    >>> from multilevel.lmm.fit import lmm_core
    >>> core = lmm_core(lmm_design("Yield ~ 1 + (1 | Batch)", load_dataset("Dyestuff")))
    >>> round(float(core.solve([0.8], True)["beta"][0]), 2)
    1527.5
    """

    __slots__ = ("core", "shift")

    def __init__(self, core: Any, shift: np.ndarray) -> None:
        self.core = core
        self.shift = np.asarray(shift, dtype=float)

    def solve(self, theta: Any, reml: bool) -> dict[str, Any]:
        sol = dict(self.core.solve(theta, reml))
        sol["beta"] = np.asarray(sol["beta"]) + self.shift
        return sol

    def copy(self) -> ShiftedCore:
        return ShiftedCore(self.core.copy(), self.shift.copy())

    def __getattr__(self, name: str) -> Any:
        if name in ShiftedCore.__slots__:  # not yet set (during unpickling): no recursion into self.core
            raise AttributeError(name)
        return getattr(self.core, name)

    def __reduce__(self) -> tuple[Any, tuple[Any, np.ndarray]]:
        return ShiftedCore, (self.core, self.shift)


def shifted_core(build: Any, y: np.ndarray, X: np.ndarray, weights: np.ndarray | None) -> Any:
    """``build(y - X b0)`` wrapped to report beta for ``y`` (``build(y)`` itself when ``b0`` is zero)."""
    shift = response_shift(y, X, weights)
    if not np.any(shift):
        return build(y)
    shifted = X @ -shift
    shifted += y
    return ShiftedCore(build(shifted), shift)
