"""Generated benchmark problems, reproducible from fixed seeds.

Each function builds one problem as a pandas DataFrame. Generation is
vectorised with numpy and writes every column in place, so memory stays O(n)
(the output columns plus one scratch column) and 10,000,000 rows take a few
seconds.

The grouping column is a pandas ``Categorical`` whose categories are the
integers ``0 .. n_groups - 1``: the analogue of an R factor, so neither tool
pays for turning labels into codes inside the timed fit (in R the CSV column
is converted with ``factor()`` before ``lmer()`` is timed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: Default seed of :func:`nested_lmm`.
NESTED_SEED = 20240611

#: True fixed effects of :func:`nested_lmm`: Intercept, x1 .. x5.
NESTED_BETA = (1.0, 0.5, -0.3, 0.2, 0.1, -0.1)

#: Standard deviations of the random intercept and slope, their correlation,
#: and the residual standard deviation in :func:`nested_lmm`.
NESTED_SD_INTERCEPT = 1.0
NESTED_SD_SLOPE = 0.5
NESTED_CORR = 0.3
NESTED_SIGMA = 1.0


def nested_theta() -> np.ndarray:
    """True ``theta`` of :func:`nested_lmm` in lme4's order.

    ``theta`` is the lower triangle (column-major) of the Cholesky factor of
    the random-effects covariance divided by ``sigma``.
    """
    l11 = NESTED_SD_INTERCEPT
    l21 = NESTED_CORR * NESTED_SD_SLOPE
    l22 = NESTED_SD_SLOPE * np.sqrt(1.0 - NESTED_CORR**2)
    return np.array([l11, l21, l22]) / NESTED_SIGMA


def nested_lmm(n_groups: int = 20_000, group_size: int = 50, seed: int = NESTED_SEED) -> pd.DataFrame:
    """Random intercept and slope model with ``n_groups * group_size`` rows.

    ``y = 1 + 0.5 x1 - 0.3 x2 + 0.2 x3 + 0.1 x4 - 0.1 x5 + b0[g] + b1[g] x1 + e``

    with ``x1 .. x5`` and ``e`` independent standard normal and
    ``(b0, b1)`` bivariate normal per group (standard deviations 1 and 0.5,
    correlation 0.3). Rows are stored group by group (``g`` is
    ``0,0,...,0,1,1,...``), as clustered data usually are.

    The random numbers are drawn in a fixed order (group effects, then
    ``x1 .. x5``, then ``e``), so a seed and a size always give the same data.

    Parameters
    ----------
    n_groups : int
        Number of levels of the grouping factor ``g``.
    group_size : int
        Rows per group.
    seed : int
        Seed of ``numpy.random.default_rng``.

    Returns
    -------
    pandas.DataFrame
        Columns ``g`` (categorical, categories ``0 .. n_groups - 1``),
        ``x1`` .. ``x5`` and ``y`` (float64).

    Examples
    --------
    >>> df = nested_lmm(n_groups=3, group_size=2, seed=1)
    >>> df.shape, list(df.columns)
    ((6, 7), ['g', 'x1', 'x2', 'x3', 'x4', 'x5', 'y'])
    >>> df["g"].cat.codes.tolist()
    [0, 0, 1, 1, 2, 2]
    """
    if n_groups < 2 or group_size < 1:
        raise ValueError("need n_groups >= 2 and group_size >= 1")
    n = n_groups * group_size
    rng = np.random.default_rng(seed)

    # Group effects: (b0, b1) = L z with L the Cholesky factor of their covariance.
    z0 = rng.standard_normal(n_groups)
    z1 = rng.standard_normal(n_groups)
    b0 = NESTED_SD_INTERCEPT * z0
    b1 = NESTED_SD_SLOPE * (NESTED_CORR * z0 + np.sqrt(1.0 - NESTED_CORR**2) * z1)
    del z0, z1

    codes = np.repeat(np.arange(n_groups, dtype=np.int32), group_size)

    xs = {}
    for j in range(1, 6):
        col = np.empty(n, dtype=np.float64)
        rng.standard_normal(out=col)
        xs[f"x{j}"] = col

    y = np.empty(n, dtype=np.float64)
    rng.standard_normal(out=y)  # e, sd NESTED_SIGMA
    if NESTED_SIGMA != 1.0:
        y *= NESTED_SIGMA
    y += NESTED_BETA[0]
    tmp = np.empty(n, dtype=np.float64)
    for j in range(1, 6):
        np.multiply(xs[f"x{j}"], NESTED_BETA[j], out=tmp)
        y += tmp
    np.take(b0, codes, out=tmp)
    y += tmp
    np.take(b1, codes, out=tmp)
    tmp *= xs["x1"]
    y += tmp
    del tmp

    g = pd.Categorical.from_codes(codes, categories=pd.RangeIndex(n_groups), validate=False)
    data: dict[str, object] = {"g": g, **xs, "y": y}
    return pd.DataFrame(data, copy=False)


def numeric_bytes(df: pd.DataFrame, columns: list[str]) -> int:
    """Bytes the given columns take as float64 (``8 * rows * len(columns)``)."""
    return 8 * len(df) * len(columns)
