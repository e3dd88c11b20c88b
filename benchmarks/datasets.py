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


# --------------------------------------------------------------------------
# Clustered panels for GEE (marginal models)
# --------------------------------------------------------------------------

#: Default seeds of :func:`binary_exch` and :func:`poisson_ar1`.
BINARY_EXCH_SEED = 20240612
POISSON_AR1_SEED = 20240613

#: Coefficients (Intercept, x1, x2, t) of the cluster-conditional logit in
#: :func:`binary_exch`; the marginal (population-averaged) coefficients that a
#: GEE estimates are these shrunk by about ``1 / sqrt(1 + 0.346 sd^2)``.
BINARY_EXCH_BETA = (-0.5, 0.5, -0.3, 0.1)

#: Standard deviation of the shared cluster effect on the logit scale in
#: :func:`binary_exch`.
BINARY_EXCH_SD_CLUSTER = 1.0

#: Marginal coefficients (Intercept, x1, x2, t) of the log mean in :func:`poisson_ar1`.
POISSON_AR1_BETA = (0.5, 0.3, -0.2, 0.05)

#: Standard deviation and lag-1 correlation of the stationary Gaussian AR(1)
#: process on the log scale in :func:`poisson_ar1`.
POISSON_AR1_SD = 0.5
POISSON_AR1_RHO = 0.6


def _panel(rng: np.random.Generator, n_clusters: int, cluster_size: int) -> dict[str, np.ndarray]:
    """``id``, ``t`` (0 .. cluster_size - 1) and standard normal ``x1``, ``x2``, rows cluster by cluster."""
    if n_clusters < 2 or cluster_size < 1:
        raise ValueError("need n_clusters >= 2 and cluster_size >= 1")
    n = n_clusters * cluster_size
    cols = {
        "id": np.repeat(np.arange(n_clusters, dtype=np.int64), cluster_size),
        "t": np.tile(np.arange(cluster_size, dtype=np.int64), n_clusters),
    }
    for name in ("x1", "x2"):
        cols[name] = np.empty(n, dtype=np.float64)
        rng.standard_normal(out=cols[name])
    return cols


def _linear_predictor(cols: dict[str, np.ndarray], beta: tuple[float, ...]) -> np.ndarray:
    """``beta[0] + beta[1] x1 + beta[2] x2 + beta[3] t`` (one new column, updated in place)."""
    eta = np.multiply(cols["x1"], beta[1])
    eta += beta[0]
    eta += beta[2] * cols["x2"]
    eta += beta[3] * cols["t"]
    return eta


def binary_exch(n_clusters: int = 200_000, cluster_size: int = 5, seed: int = BINARY_EXCH_SEED) -> pd.DataFrame:
    """Correlated binary outcomes with an exchangeable within-cluster dependence.

    ``P(y = 1 | u) = logistic(-0.5 + 0.5 x1 - 0.3 x2 + 0.1 t + u[id])`` with
    ``u ~ N(0, 1)`` shared by the rows of a cluster, so every pair of rows in
    a cluster is correlated alike (exchangeable). ``t`` is the row's position
    ``0 .. cluster_size - 1``; ``x1``, ``x2`` are standard normal. Rows are
    stored cluster by cluster.

    Random numbers are drawn in a fixed order (``x1``, ``x2``, ``u``, the
    uniforms for ``y``), so a seed and a size always give the same data.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``t`` (int64), ``x1``, ``x2``, ``y`` (float64, 0/1).

    Examples
    --------
    >>> df = binary_exch(n_clusters=3, cluster_size=2, seed=1)
    >>> list(df.columns), df["id"].tolist(), df["t"].tolist()
    (['id', 't', 'x1', 'x2', 'y'], [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])
    >>> set(df["y"].unique()) <= {0.0, 1.0}
    True
    """
    rng = np.random.default_rng(seed)
    cols = _panel(rng, n_clusters, cluster_size)
    eta = _linear_predictor(cols, BINARY_EXCH_BETA)
    eta += np.repeat(BINARY_EXCH_SD_CLUSTER * rng.standard_normal(n_clusters), cluster_size)
    # y = 1 when a uniform falls below logistic(eta), i.e. when logit(uniform) < eta.
    u = rng.random(eta.shape[0])
    y = (np.log(u) - np.log1p(-u) < eta).astype(np.float64)
    del u, eta
    return pd.DataFrame({**cols, "y": y}, copy=False)


def poisson_ar1(n_clusters: int = 20_000, cluster_size: int = 5, seed: int = POISSON_AR1_SEED) -> pd.DataFrame:
    """Poisson counts whose within-cluster dependence decays with the lag (AR(1)-like).

    ``y | z ~ Poisson(exp(eta + z - sd^2 / 2))`` with
    ``eta = 0.5 + 0.3 x1 - 0.2 x2 + 0.05 t`` and, in each cluster, ``z`` a
    stationary Gaussian AR(1) series over ``t`` (standard deviation 0.5,
    lag-1 correlation 0.6). The ``- sd^2 / 2`` makes the marginal mean exactly
    ``exp(eta)``, so the marginal log-linear model holds with the
    coefficients above. Rows are stored cluster by cluster, ``t`` ascending.

    Random numbers are drawn in a fixed order (``x1``, ``x2``, the AR(1)
    innovations wave by wave, the counts).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``t`` (int64), ``x1``, ``x2``, ``y`` (float64 counts).

    Examples
    --------
    >>> df = poisson_ar1(n_clusters=3, cluster_size=2, seed=1)
    >>> list(df.columns), df["t"].tolist()
    (['id', 't', 'x1', 'x2', 'y'], [0, 1, 0, 1, 0, 1])
    >>> bool((df["y"] >= 0).all() and (df["y"] == df["y"].round()).all())
    True
    """
    rng = np.random.default_rng(seed)
    cols = _panel(rng, n_clusters, cluster_size)
    eta = _linear_predictor(cols, POISSON_AR1_BETA)
    z = np.empty((n_clusters, cluster_size))
    z[:, 0] = rng.standard_normal(n_clusters)
    innovation_sd = np.sqrt(1.0 - POISSON_AR1_RHO**2)
    for k in range(1, cluster_size):
        z[:, k] = POISSON_AR1_RHO * z[:, k - 1] + innovation_sd * rng.standard_normal(n_clusters)
    eta += POISSON_AR1_SD * z.reshape(-1) - 0.5 * POISSON_AR1_SD**2
    del z
    y = rng.poisson(np.exp(eta)).astype(np.float64)
    return pd.DataFrame({**cols, "y": y}, copy=False)


# --------------------------------------------------------------------------
# Panels for GLS (correlated residuals, no random effects)
# --------------------------------------------------------------------------

#: Default seed of :func:`gls_ar1`.
GLS_AR1_SEED = 20240614

#: Coefficients (Intercept, t, trt, t:trt) of the mean in :func:`gls_ar1`.
GLS_AR1_BETA = (1.0, 0.5, 0.3, 0.2)

#: Lag-1 correlation and standard deviation of the stationary AR(1) errors in :func:`gls_ar1`.
GLS_AR1_PHI = 0.6
GLS_AR1_SD = 1.0

#: Levels of the treatment factor of :func:`gls_ar1` (the first is the reference).
GLS_AR1_TRT_LEVELS = ("control", "treated")


def gls_ar1(n_clusters: int = 20_000, cluster_size: int = 10, seed: int = GLS_AR1_SEED) -> pd.DataFrame:
    """A balanced longitudinal panel with AR(1) errors within each subject.

    ``n_clusters`` subjects of ``cluster_size`` times each (the arguments are
    named as those of the GEE panels above).

    ``y = 1 + 0.5 t + 0.3 trt + 0.2 t trt + e`` for ``t = 0 .. cluster_size - 1``,
    where ``trt`` (0 for "control", 1 for "treated", each with probability
    1/2) is fixed per subject and, per subject, ``e`` is a stationary Gaussian
    AR(1) series over ``t`` (standard deviation 1, lag-1 correlation 0.6).
    This is the model of ``nlme::gls(y ~ t * trt, correlation = corAR1(form =
    ~ t | subject))``. Rows are stored subject by subject, ``t`` ascending.

    Random numbers are drawn in a fixed order (the treatment uniforms, then the
    AR(1) innovations wave by wave), so a seed and a size always give the same
    data.

    Returns
    -------
    pandas.DataFrame
        Columns ``subject`` (categorical, categories ``0 .. n_clusters - 1``),
        ``t`` (int64), ``trt`` (categorical, "control" / "treated") and ``y``
        (float64).

    Examples
    --------
    >>> df = gls_ar1(n_clusters=3, cluster_size=2, seed=1)
    >>> list(df.columns), df["subject"].cat.codes.tolist(), df["t"].tolist()
    (['subject', 't', 'trt', 'y'], [0, 0, 1, 1, 2, 2], [0, 1, 0, 1, 0, 1])
    >>> list(df["trt"].cat.categories)
    ['control', 'treated']
    """
    if n_clusters < 2 or cluster_size < 1:
        raise ValueError("need n_clusters >= 2 and cluster_size >= 1")
    rng = np.random.default_rng(seed)
    treated = rng.random(n_clusters) < 0.5

    # y is built as an (n_clusters, cluster_size) array, row-major: subject by subject.
    y = np.empty((n_clusters, cluster_size), dtype=np.float64)
    y[:, 0] = rng.standard_normal(n_clusters)
    innovation_sd = np.sqrt(1.0 - GLS_AR1_PHI**2)
    for k in range(1, cluster_size):
        y[:, k] = GLS_AR1_PHI * y[:, k - 1] + innovation_sd * rng.standard_normal(n_clusters)
    if GLS_AR1_SD != 1.0:
        y *= GLS_AR1_SD
    times = np.arange(cluster_size, dtype=np.float64)
    b0, b_t, b_trt, b_t_trt = GLS_AR1_BETA
    y += b0 + b_t * times
    y[treated] += b_trt + b_t_trt * times

    subject = pd.Categorical.from_codes(np.repeat(np.arange(n_clusters, dtype=np.int32), cluster_size),
                                        categories=pd.RangeIndex(n_clusters), validate=False)
    trt = pd.Categorical.from_codes(np.repeat(treated.astype(np.int8), cluster_size),
                                    categories=list(GLS_AR1_TRT_LEVELS), validate=False)
    data: dict[str, object] = {"subject": subject, "t": np.tile(np.arange(cluster_size, dtype=np.int64), n_clusters),
                               "trt": trt, "y": y.reshape(-1)}
    return pd.DataFrame(data, copy=False)


# --------------------------------------------------------------------------
# Binary outcomes with random intercepts for GLMMs
# --------------------------------------------------------------------------

#: Default seeds of :func:`glmm_logit` and :func:`glmm_crossed_binomial`.
GLMM_LOGIT_SEED = 20240615
GLMM_CROSSED_SEED = 20240616

#: Fixed effects (Intercept, x1, x2) and random-intercept standard deviation of :func:`glmm_logit`.
GLMM_LOGIT_BETA = (-0.5, 0.6, -0.4)
GLMM_LOGIT_SD = 0.8

#: Fixed effects (Intercept, x), the standard deviations of the random
#: intercepts of ``a`` and ``b``, and the number of levels of ``b`` in
#: :func:`glmm_crossed_binomial`.
GLMM_CROSSED_BETA = (-0.3, 0.5)
GLMM_CROSSED_SD_A = 0.6
GLMM_CROSSED_SD_B = 0.4
GLMM_CROSSED_N_B = 200


def _bernoulli_logit(rng: np.random.Generator, eta: np.ndarray) -> np.ndarray:
    """0/1 draws with ``P(y = 1) = logistic(eta)``: 1 where ``logit(uniform) < eta``."""
    u = rng.random(eta.shape[0])
    return (np.log(u) - np.log1p(-u) < eta).astype(np.float64)


def _factor(codes: np.ndarray, n_levels: int) -> pd.Categorical:
    return pd.Categorical.from_codes(codes, categories=pd.RangeIndex(n_levels), validate=False)


def glmm_logit(n_clusters: int = 5_000, cluster_size: int = 20, seed: int = GLMM_LOGIT_SEED) -> pd.DataFrame:
    """Binary outcomes with a random intercept per group (a logistic GLMM).

    ``P(y = 1 | b) = logistic(-0.5 + 0.6 x1 - 0.4 x2 + b[g])`` with
    ``b ~ N(0, 0.8^2)`` per group and ``x1``, ``x2`` standard normal: the
    model of ``lme4::glmer(y ~ x1 + x2 + (1 | g), family = binomial)``.
    Rows are stored group by group.

    Random numbers are drawn in a fixed order (``x1``, ``x2``, ``b``, the
    uniforms for ``y``), so a seed and a size always give the same data.

    Returns
    -------
    pandas.DataFrame
        Columns ``g`` (categorical, categories ``0 .. n_clusters - 1``),
        ``x1``, ``x2`` and ``y`` (float64, 0/1).

    Examples
    --------
    >>> df = glmm_logit(n_clusters=3, cluster_size=2, seed=1)
    >>> list(df.columns), df["g"].cat.codes.tolist()
    (['g', 'x1', 'x2', 'y'], [0, 0, 1, 1, 2, 2])
    >>> set(df["y"].unique()) <= {0.0, 1.0}
    True
    """
    if n_clusters < 2 or cluster_size < 1:
        raise ValueError("need n_clusters >= 2 and cluster_size >= 1")
    n = n_clusters * cluster_size
    rng = np.random.default_rng(seed)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    codes = np.repeat(np.arange(n_clusters, dtype=np.int32), cluster_size)
    eta = np.take(GLMM_LOGIT_SD * rng.standard_normal(n_clusters), codes)
    eta += GLMM_LOGIT_BETA[0]
    eta += GLMM_LOGIT_BETA[1] * x1
    eta += GLMM_LOGIT_BETA[2] * x2
    y = _bernoulli_logit(rng, eta)
    del eta
    return pd.DataFrame({"g": _factor(codes, n_clusters), "x1": x1, "x2": x2, "y": y}, copy=False)


def glmm_crossed_binomial(n_clusters: int = 2_000, cluster_size: int = 100, seed: int = GLMM_CROSSED_SEED,
                          n_b: int = GLMM_CROSSED_N_B) -> pd.DataFrame:
    """Binary outcomes with random intercepts of two crossed factors.

    ``n_clusters`` levels of ``a`` with ``cluster_size`` rows each (rows are
    stored ``a`` by ``a``); each row also belongs to one of ``n_b`` levels of
    ``b``, assigned as a random permutation of a balanced sequence (every
    level of ``b`` gets ``n / n_b`` rows, up to one, spread over the levels
    of ``a``). ``P(y = 1) = logistic(-0.3 + 0.5 x + u[a] + v[b])`` with
    ``u ~ N(0, 0.6^2)``, ``v ~ N(0, 0.4^2)`` and ``x`` standard normal: the
    model of ``glmer(y ~ x + (1 | a) + (1 | b), family = binomial)``.

    Random numbers are drawn in a fixed order (``x``, the permutation for
    ``b``, ``u``, ``v``, the uniforms for ``y``).

    Returns
    -------
    pandas.DataFrame
        Columns ``a``, ``b`` (categorical, integer categories from 0), ``x``
        and ``y`` (float64, 0/1).

    Examples
    --------
    >>> df = glmm_crossed_binomial(n_clusters=3, cluster_size=4, seed=1, n_b=2)
    >>> list(df.columns), df["a"].cat.codes.tolist()
    (['a', 'b', 'x', 'y'], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    >>> df["b"].value_counts().tolist()
    [6, 6]
    """
    rng = np.random.default_rng(seed)
    cols, eta = _crossed_intercepts(rng, n_clusters, cluster_size, n_b, GLMM_CROSSED_SD_A, GLMM_CROSSED_SD_B,
                                    GLMM_CROSSED_BETA)
    cols["y"] = _bernoulli_logit(rng, eta)
    return pd.DataFrame(cols, copy=False)


def _crossed_intercepts(rng: np.random.Generator, n_a: int, rows_per_a: int, n_b: int, sd_a: float, sd_b: float,
                        beta: tuple[float, float]) -> tuple[dict[str, object], np.ndarray]:
    """Columns ``a``, ``b``, ``x`` of a two-factor crossed design and its linear predictor
    ``beta[0] + beta[1] x + u[a] + v[b]`` (``u ~ N(0, sd_a^2)``, ``v ~ N(0, sd_b^2)``).

    ``a`` has ``rows_per_a`` consecutive rows per level; ``b`` is a random
    permutation of a balanced sequence of ``n_b`` levels. Draws ``x``, the
    permutation, ``u`` and ``v``, in that order.
    """
    n = n_a * rows_per_a
    if n_a < 2 or n_b < 2 or n < n_b:
        raise ValueError("need at least 2 levels of each factor and at least as many rows as levels of b")
    x = rng.standard_normal(n)
    a = np.repeat(np.arange(n_a, dtype=np.int32), rows_per_a)
    b = rng.permutation(np.arange(n, dtype=np.int32) % n_b)
    eta = np.take(sd_a * rng.standard_normal(n_a), a)
    eta += np.take(sd_b * rng.standard_normal(n_b), b)
    eta += beta[0]
    eta += beta[1] * x
    return {"a": _factor(a, n_a), "b": _factor(b, n_b), "x": x}, eta


# --------------------------------------------------------------------------
# Crossed linear mixed model
# --------------------------------------------------------------------------

#: Default seed of :func:`crossed_lmm`.
CROSSED_LMM_SEED = 20240617

#: True fixed effects (Intercept, x), random-intercept standard deviations of
#: ``a`` and ``b``, and the residual standard deviation of :func:`crossed_lmm`.
CROSSED_LMM_BETA = (2.0, 0.5)
CROSSED_LMM_SD_A = 0.8
CROSSED_LMM_SD_B = 0.5
CROSSED_LMM_SIGMA = 1.0


def crossed_lmm(n_a: int = 50_000, rows_per_a: int = 20, n_b: int = 5_000,
                seed: int = CROSSED_LMM_SEED) -> pd.DataFrame:
    """Gaussian outcomes with random intercepts of two crossed factors.

    ``n_a`` levels of ``a`` with ``rows_per_a`` rows each (stored ``a`` by
    ``a``); each row also belongs to one of ``n_b`` levels of ``b``, assigned
    as a random permutation of a balanced sequence, so ``b`` is crossed with
    ``a`` (a level of ``b`` meets about ``n / n_b`` levels of ``a``).
    ``y = 2 + 0.5 x + u[a] + v[b] + e`` with ``u ~ N(0, 0.8^2)``,
    ``v ~ N(0, 0.5^2)``, ``e ~ N(0, 1)`` and ``x`` standard normal: the model
    of ``lmer(y ~ x + (1 | a) + (1 | b))``. The defaults give 1,000,000 rows
    with 50,000 x 5,000 levels.

    Random numbers are drawn in a fixed order (``x``, the permutation for
    ``b``, ``u``, ``v``, ``e``).

    Returns
    -------
    pandas.DataFrame
        Columns ``a``, ``b`` (categorical, integer categories from 0), ``x``
        and ``y`` (float64).

    Examples
    --------
    >>> df = crossed_lmm(n_a=3, rows_per_a=4, n_b=2, seed=1)
    >>> list(df.columns), df["a"].cat.codes.tolist()
    (['a', 'b', 'x', 'y'], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    >>> df["b"].value_counts().tolist()
    [6, 6]
    """
    rng = np.random.default_rng(seed)
    cols, y = _crossed_intercepts(rng, n_a, rows_per_a, n_b, CROSSED_LMM_SD_A, CROSSED_LMM_SD_B, CROSSED_LMM_BETA)
    y += CROSSED_LMM_SIGMA * rng.standard_normal(len(y))
    cols["y"] = y
    return pd.DataFrame(cols, copy=False)


# --------------------------------------------------------------------------
# A longitudinal mixed model with AR(1), heteroscedastic residuals
# --------------------------------------------------------------------------

#: Default seed of :func:`lme_ar1_power`.
LME_AR1_SEED = 20261201
#: Fixed effects (Intercept, x, t), random intercept and slope SDs and their correlation, the residual
#: AR(1) correlation and the power of the variance function in :func:`lme_ar1_power`.
LME_AR1_BETA = (1.0, 0.5, 0.3)
LME_AR1_SD = (1.0, 0.2)
LME_AR1_CORR = 0.2
LME_AR1_PHI = 0.6
LME_AR1_POWER = 0.3


def lme_ar1_power(n_subjects: int = 10_000, visits: int = 10, seed: int = LME_AR1_SEED) -> pd.DataFrame:
    """Subjects with ``visits`` visits: random intercept and slope, AR(1) residuals in the visit, varPower.

    ``y = 1 + 0.5 x + 0.3 t + b0 + b1 t + e`` with ``t = visit / (visits - 1)``,
    ``(b0, b1)`` bivariate normal per subject (SDs 1 and 0.2, correlation 0.2),
    and per subject ``e`` a stationary AR(1) series over the visits (lag-1
    correlation 0.6) scaled by ``v^0.3``, ``v = visit + 1``: the model of
    ``lme(y ~ x + t, random = ~ t | id, correlation = corAR1(form = ~ visit | id),
    weights = varPower(form = ~ v))``. Rows are stored subject by subject.

    Examples
    --------
    >>> df = lme_ar1_power(n_subjects=2, visits=3, seed=1)
    >>> list(df.columns), df["visit"].tolist()
    (['id', 'visit', 'v', 't', 'x', 'y'], [0, 1, 2, 0, 1, 2])
    """
    rng = np.random.default_rng(seed)
    sd0, sd1 = LME_AR1_SD
    b0 = sd0 * rng.standard_normal(n_subjects)
    b1 = sd1 * (LME_AR1_CORR * b0 / sd0 + np.sqrt(1 - LME_AR1_CORR**2) * rng.standard_normal(n_subjects))
    e = np.empty((n_subjects, visits))
    e[:, 0] = rng.standard_normal(n_subjects)
    for k in range(1, visits):
        e[:, k] = LME_AR1_PHI * e[:, k - 1] + np.sqrt(1 - LME_AR1_PHI**2) * rng.standard_normal(n_subjects)
    visit = np.arange(visits)
    t = visit / max(visits - 1, 1)
    e *= (visit + 1.0) ** LME_AR1_POWER
    x = rng.standard_normal((n_subjects, visits))
    beta0, beta_x, beta_t = LME_AR1_BETA
    y = beta0 + beta_x * x + beta_t * t + b0[:, None] + b1[:, None] * t + e
    ids = pd.Categorical.from_codes(np.repeat(np.arange(n_subjects, dtype=np.int32), visits),
                                    categories=pd.RangeIndex(n_subjects), validate=False)
    return pd.DataFrame({"id": ids, "visit": np.tile(visit, n_subjects), "v": np.tile(visit + 1.0, n_subjects),
                         "t": np.tile(t, n_subjects), "x": x.reshape(-1), "y": y.reshape(-1)}, copy=False)
