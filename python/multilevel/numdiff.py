"""Finite-difference Hessians for the covariance of estimates (GLS intervals, GLMM standard errors)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def _steps(x0: np.ndarray, step: float, scale: np.ndarray | None = None) -> np.ndarray:
    """Per-coordinate steps ``step * max(|x|, scale)``.

    With ``scale`` 1 (the default) these are lme4's ``deriv12`` and nlme's ``fdHess`` steps. A
    coordinate whose natural size is far from 1 (the coefficient of a predictor of scale 1e6, about
    1e-6) needs its own ``scale``, e.g. its standard error: differencing ``x / scale`` with steps
    ``step * max(|x / scale|, 1)`` is the same thing, and makes the steps follow a rescaling of ``x``.
    """
    x0 = np.asarray(x0, dtype=float)
    if scale is None:
        return step * np.maximum(np.abs(x0), 1.0)
    scale = np.broadcast_to(np.asarray(scale, dtype=float), x0.shape)
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError(f"scale must be positive and finite, not {scale.tolist()}")
    return step * np.maximum(np.abs(x0), scale)


def hessian(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 1e-4,
            scale: np.ndarray | None = None) -> np.ndarray:
    """Central-difference Hessian of a scalar function.

    Steps are ``step * max(|x0|, scale)`` per coordinate (``scale`` 1 by default; see :func:`_steps`).

    Examples
    --------
    >>> h = hessian(lambda x: float(x[0] ** 2 + 3 * x[0] * x[1]), np.array([1.0, 2.0]))
    >>> np.round(h, 6).tolist()
    [[2.0, 3.0], [3.0, 0.0]]

    A coordinate of natural size 1e-6 needs its scale (steps of 1e-4 would be 100 of its units):

    >>> f = lambda x: float(np.exp(1e6 * x[0]))
    >>> x0, exact = np.array([1e-6]), 1e12 * np.e
    >>> round(float(hessian(f, x0, scale=np.array([1e-6]))[0, 0] / exact), 6)
    1.0
    >>> bool(hessian(f, x0)[0, 0] / exact > 1e30)  # without: 100 units, garbage
    True
    """
    x0 = np.asarray(x0, dtype=float)
    k, h = x0.size, _steps(x0, step, scale)
    f0 = f(x0)
    out = np.zeros((k, k))
    for i in range(k):
        ei = np.zeros(k)
        ei[i] = h[i]
        out[i, i] = (f(x0 + ei) - 2 * f0 + f(x0 - ei)) / h[i] ** 2
        for j in range(i):
            ej = np.zeros(k)
            ej[j] = h[j]
            out[i, j] = out[j, i] = (f(x0 + ei + ej) - f(x0 + ei - ej) - f(x0 - ei + ej) + f(x0 - ei - ej)) \
                / (4 * h[i] * h[j])
    return out


def hessian_from_gradient(g: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, step: float = 1e-4,
                          scale: np.ndarray | None = None) -> np.ndarray:
    """Symmetrized central differences of an exact gradient (2 k gradient calls).

    Steps as in :func:`hessian`.

    Examples
    --------
    >>> h = hessian_from_gradient(lambda x: np.array([2 * x[0] + 3 * x[1], 3 * x[0]]), np.array([1.0, 2.0]))
    >>> np.round(h, 6).tolist()
    [[2.0, 3.0], [3.0, 0.0]]
    """
    x0 = np.asarray(x0, dtype=float)
    k, h = x0.size, _steps(x0, step, scale)
    out = np.zeros((k, k))
    for i in range(k):
        e = np.zeros(k)
        e[i] = h[i]
        out[:, i] = (g(x0 + e) - g(x0 - e)) / (2 * h[i])
    return 0.5 * (out + out.T)


def richardson_hessian(f: Callable[[np.ndarray], float], x0: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Central-difference Hessian refined by one Richardson step (error O(h^4)).

    Two Hessians, at steps h and h/2, are combined as ``(4 H(h/2) - H(h)) / 3``;
    numDeriv's ``hessian`` (used by lmerTest) refines the same way with more steps.

    Examples
    --------
    >>> h = richardson_hessian(lambda x: float(np.exp(x[0]) * x[1] ** 3), np.array([0.5, 2.0]))
    >>> bool(np.allclose(h, [[np.exp(0.5) * 8, np.exp(0.5) * 12], [np.exp(0.5) * 12, np.exp(0.5) * 12]], rtol=1e-6))
    True
    """
    return (4.0 * hessian(f, x0, step / 2.0) - hessian(f, x0, step)) / 3.0


def richardson_jacobian(f: Callable[[np.ndarray], np.ndarray], x0: np.ndarray, step: float = 1e-4) -> np.ndarray:
    """Derivative of an array-valued function in each coordinate: ``out[i] = d f / d x_i``.

    Central differences at steps h and h/2 combined by one Richardson step.

    Examples
    --------
    >>> jac = richardson_jacobian(lambda x: np.array([x[0] * x[1], np.sin(x[0])]), np.array([1.0, 3.0]))
    >>> bool(np.allclose(jac, [[3.0, np.cos(1.0)], [1.0, 0.0]], rtol=1e-9))
    True
    """
    x0 = np.asarray(x0, dtype=float)
    steps = _steps(x0, step)

    def central(i: int, h: float) -> np.ndarray:
        e = np.zeros(x0.size)
        e[i] = h
        return (np.asarray(f(x0 + e)) - np.asarray(f(x0 - e))) / (2.0 * h)

    return np.stack([(4.0 * central(i, h / 2.0) - central(i, h)) / 3.0 for i, h in enumerate(steps)])
