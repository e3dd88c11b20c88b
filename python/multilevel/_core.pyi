"""Type stub of multilevel._core: the compiled C++/Eigen core (cpp/bindings/*.cpp).

``multilevel._core`` re-exports whichever build the CPU runs (``_core_avx2`` or
``_core_base``); both have this interface. Shapes: n rows, p fixed-effect columns,
terms k = 0..K-1 with p_k columns and nlevels_k levels, J clusters. Array arguments
are converted to float64 / int32 / int64 as named (copied only when their dtype or
layout does not fit); 1-D arrays may have any stride, 2-D arrays any strides.
"""

from collections.abc import Sequence
from typing import Literal, TypedDict

import numpy as np
from numpy.typing import ArrayLike, NDArray

_Float = NDArray[np.float64]
_Int = NDArray[np.int64]

#: Which build was loaded: "_core_avx2" or "_core_base".
build: str

def get_num_threads() -> int:
    """Threads the core uses (1 if built without OpenMP)."""

def set_num_threads(n: int) -> None:
    """Set the number of threads of the core for the whole process (0: the default).

    Results do not depend on it. Raises ValueError for n < 0.
    """

class _LmmSolution(TypedDict):
    """What ``LmmCore.solve`` and ``GlmmPirls.solve`` return."""

    beta: _Float  #: (p,) fixed effects
    RX: _Float  #: (p, p) lower factor: X'V^-1 X / sigma^2 = RX RX'
    pwrss: float  #: penalized weighted residual sum of squares
    sigma: float  #: residual standard deviation
    objective: float  #: -2 log-likelihood (ML) or the REML criterion
    logdet_re: float  #: log det(Lambda'Z'WZ Lambda + I)
    b: list[_Float]  #: per term (p_k, nlevels_k): conditional modes of b
    u: list[_Float]  #: per term (p_k, nlevels_k): spherical modes, b = Lambda u

class NormalEquationsAccumulator:
    """Sums of [Z X y]'W[Z X y] over rows, added chunk by chunk and mergeable.

    Parameters
    ----------
    p : int
        Number of fixed-effect columns.
    term_p : list of int
        Columns per level of each random-effects term (p_k).
    nlevels : list of int
        Levels of each term's grouping factor, fixed before any row is added.
        Terms must come sorted by decreasing number of levels.

    Sums are added in the order the chunks are added or merged, so a given
    chunking gives bit-identical sums. The object pickles.
    """

    def __init__(self, p: int, term_p: Sequence[int], nlevels: Sequence[int]) -> None: ...
    def add_rows(
        self,
        y: ArrayLike,
        x: ArrayLike,
        weights: ArrayLike,
        codes: Sequence[ArrayLike],
        z: Sequence[ArrayLike],
    ) -> None:
        """Add one chunk of m rows.

        y (m,) float64; x (m, p) float64; weights (m,) float64, or an empty array for unit
        weights; codes: per term (m,) int32 levels in [0, nlevels_k); z: per term (m, p_k) float64.
        """

    def merge(self, other: NormalEquationsAccumulator) -> None:
        """Add the sums of another accumulator over other rows (this one's first)."""

    def keep_fixed_columns(self, kept: Sequence[int]) -> None:
        """Keep only these fixed-effect columns (ascending indices), e.g. after dropping aliased ones."""

    def copy(self) -> NormalEquationsAccumulator: ...
    @property
    def nobs(self) -> int:
        """Rows added so far."""

    @property
    def p(self) -> int:
        """Fixed-effect columns."""

    @property
    def sum_log_weights(self) -> float: ...
    @property
    def xy_cross(self) -> _Float:
        """[X y]'W[X y] (p + 1, p + 1) summed so far."""

    def __getstate__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[object, ...], /) -> None: ...

class LmmCore:
    """Sufficient statistics and profiled objective of a linear mixed model.

    Built once from the rows (one pass); every later call works on blocks whose
    size depends on the random-effect levels and fixed-effect columns only.

    Parameters
    ----------
    y : (n,) float64
    x : (n, p) float64
    weights : (n,) float64, or an empty array for unit weights
    codes : list of (n,) int32, one per term, levels in [0, nlevels[k])
    z : list of (n, p_k) float64, one per term
    nlevels : list of int
        Terms must come sorted by decreasing number of levels.
    storage : {"auto", "dense", "sparse"}
        Storage of the random-effects block after term 0; "auto" picks by fill-in.
    """

    def __init__(
        self,
        y: ArrayLike,
        x: ArrayLike,
        weights: ArrayLike,
        codes: Sequence[ArrayLike],
        z: Sequence[ArrayLike],
        nlevels: Sequence[int],
        storage: str = "auto",
    ) -> None: ...
    @staticmethod
    def from_accumulator(
        accumulator: NormalEquationsAccumulator, storage: str = "auto"
    ) -> LmmCore:
        """The model from the sums of a NormalEquationsAccumulator (which stays usable).

        storage: "auto", "dense" or "sparse", as for the constructor.
        """

    @property
    def ntheta(self) -> int:
        """Length of theta: sum over terms of p_k (p_k + 1) / 2."""

    @property
    def nobs(self) -> int: ...
    @property
    def rest_storage(self) -> Literal["dense", "sparse", "none"]:
        """Storage chosen for the terms after the first ("none" with one term)."""

    def objective(self, theta: ArrayLike, reml: bool) -> float:
        """Profiled deviance (ML) or REML criterion at theta (ntheta,); inf if not positive definite."""

    def solve(self, theta: ArrayLike, reml: bool) -> _LmmSolution:
        """Estimates at theta (ntheta,): beta, RX, pwrss, sigma, objective, logdet_re, b, u."""

    def conditional_variance(self, term: int, sigma: float) -> _Float:
        """Conditional covariance of b for term k: (p_k, p_k * nlevels_k). Call after solve()."""

    def copy(self) -> LmmCore:
        """An independent copy (its own factorization)."""

    def __getstate__(self) -> tuple[object, ...]: ...
    def __setstate__(self, state: tuple[object, ...], /) -> None: ...

class _PirlsResult(TypedDict):
    """What ``GlmmPirls.run`` returns."""

    eta: _Float  #: (n,) linear predictor at the modes (offset included)
    beta: _Float  #: (p,)
    u: _Float  #: spherical modes, terms concatenated, level-major within a term
    b: list[_Float]  #: per term (p_k, nlevels_k)
    deviance: float  #: sum of prior-weighted unit deviances at the modes
    logdet: float  #: log det(Lambda'Z'WZ Lambda + I) at the modes' weights
    iterations: int

class GlmmPirls:
    """Penalized iteratively reweighted least squares for a GLMM (copies the rows).

    Parameters
    ----------
    y : (n,) float64, binomial proportions or counts
    x : (n, p) float64
    prior : (n,) float64 prior weights (binomial: trials)
    offset : (n,) float64
    codes : list of (n,) int32, one per term
    z : list of (n, p_k) float64, one per term
    nlevels : list of int
    family : 0 binomial, 1 poisson, 2 Gamma, 3 negative binomial (shape via set_shape)
    link : 0 logit, 1 probit, 2 cloglog, 3 log, 4 identity, 5 sqrt
    """

    def __init__(
        self,
        y: ArrayLike,
        x: ArrayLike,
        prior: ArrayLike,
        offset: ArrayLike,
        codes: Sequence[ArrayLike],
        z: Sequence[ArrayLike],
        nlevels: Sequence[int],
        family: int,
        link: int,
    ) -> None: ...
    def run(
        self, theta: ArrayLike, beta: ArrayLike, fixed_beta: bool, eta_start: ArrayLike, tol: float, maxiter: int
    ) -> _PirlsResult:
        """Conditional modes at theta (ntheta,) from eta_start (n,); beta (p,) held fixed if fixed_beta."""

    def set_prior(self, prior: ArrayLike) -> None:
        """Replace the prior weights (n,) (the Gamma dispersion enters as prior / phi)."""

    def set_shape(self, shape: float) -> None:
        """Set the negative binomial shape k > 0."""

    def solve(self, theta: ArrayLike, reml: bool) -> _LmmSolution:
        """LmmCore.solve on the last penalized least-squares system."""

    def conditional_variance(self, term: int, sigma: float) -> _Float:
        """LmmCore.conditional_variance on the last system: (p_k, p_k * nlevels_k)."""

    def system_copy(self) -> LmmCore:
        """An independent LmmCore holding the last penalized least-squares system."""

class _ClusterSumsResult(TypedDict):
    """What ``cluster_sums`` returns."""

    H: _Float  #: (p, p) information sum_j D_j' V_j^-1 D_j
    U: _Float  #: (p,) quasi-score sum_j D_j' V_j^-1 (y_j - mu_j)
    M: _Float  #: (p, p) meat, by the meat kind
    ee: float  #: sum_j e_j' R_j^-1 e_j
    logdet: float  #: sum_j log det R_j
    failed_cluster: int  #: first cluster whose R_j is not positive definite, or -1

def cluster_sums(
    x: ArrayLike,
    a: ArrayLike,
    e: ArrayLike,
    order: ArrayLike,
    ptr: ArrayLike,
    position: ArrayLike,
    corr_kind: int,
    alpha: float,
    table: ArrayLike,
    meat: int,
    h_full: ArrayLike,
    time: ArrayLike = ...,
) -> _ClusterSumsResult:
    """Information H (p, p), quasi-score U (p,) and meat M (p, p) of a GEE, summed over clusters.

    x (n, p) float64 in data row order; a (n,) float64 (dmu/deta) / sqrt(phi v(mu) / w);
    e (n,) float64 (y - mu) / sqrt(phi v(mu) / w); order (n,) int32: data rows cluster by
    cluster, within a cluster by position; ptr (J+1,) int64: cluster j is
    order[ptr[j]:ptr[j+1]]; position (n,) int32: 0-based position of each row in its cluster;
    corr_kind 0 independence, 1 exchangeable, 2 AR(1), 3 table, 4 continuous-time AR(1);
    alpha: the parameter of exchangeable and the AR(1) kinds; table (T, T) float64:
    correlation by position pair (kind 3), else any; meat 0 robust, 1 bias-reduced
    (Mancl-DeRouen), 2 one-step jackknife; h_full (p, p) float64: H at the estimates
    (meat 1 and 2); time (n,) float64 continuous times (kind 4), else empty (the default).
    """

def group_index(codes: ArrayLike, nlevels: int) -> tuple[_Int, NDArray[np.int32]]:
    """Rows grouped by level by a counting sort: (ptr (nlevels + 1,) int64, order (n,) int32).

    codes (n,) int32 in [0, nlevels); the rows of level j are order[ptr[j]:ptr[j+1]], in data order.
    """

def gee_working_arrays(
    eta: ArrayLike, y: ArrayLike, w: ArrayLike, family: int, link: int
) -> tuple[_Float, _Float, _Float, int]:
    """A GEE's per-row arrays at eta (phi = 1): (mu, pearson, root_info, first bad row or -1).

    w: prior weights or empty; family 0 binomial, 1 poisson, 2 gamma, 4 gaussian; link 0 logit,
    1 probit, 2 cloglog, 3 log, 4 identity, 5 sqrt.
    """

def correlation_basis(
    x: ArrayLike, a: ArrayLike, e: ArrayLike, order: ArrayLike, ptr: ArrayLike, position: ArrayLike, kind: int
) -> tuple[_Float, _Int, list[_Float]]:
    """The alpha-free sums of a GEE's cross products ``[D e]' R(alpha)^-1 [D e]`` (correlation_basis.hpp).

    Arguments as in cluster_sums; kind 0 independence, 1 exchangeable, 2 AR(1), 3 patterns of
    positions (all < 63). Returns (free (p+1, p+1), classes (K,) int64: cluster sizes, gaps or
    position bit masks present, terms: K arrays (m, w, w): exchangeable m = 1, w = p+1 (sum s s');
    AR(1) m = 3, w = p+1 (sum b_i b_i', sum b_i b_{i-1}', sum b_{i-1} b_{i-1}'); patterns m = 1,
    w = (positions in the pattern) (p+1) (sum v v' of the stacked rows)).
    """

def pair_moments(
    r: ArrayLike, order: ArrayLike, ptr: ArrayLike, position: ArrayLike, grouping: int, npositions: int
) -> tuple[_Float, _Float]:
    """(sums of r_i r_k over pairs of rows in one cluster, pair counts), per group.

    grouping 0: one group; 1: by lag |t_i - t_k| (npositions groups, index = lag);
    2: by position pair (npositions**2 groups, index t_i * T + t_k with t_i < t_k).
    r (n,) float64 in data row order; order, ptr, position as in cluster_sums.
    """

def whiten_rows(
    values: ArrayLike,
    order: ArrayLike,
    ptr: ArrayLike,
    position: ArrayLike,
    corr_kind: int,
    alpha: float,
    table: ArrayLike,
    time: ArrayLike = ...,
) -> tuple[_Float, int, float]:
    """Rows of values (n, k) multiplied cluster by cluster by W_j (W_j' W_j = R_j^-1).

    Returns (whitened (n, k) in data order, failed_cluster or -1, sum_j log det R_j). W_j is L_j^-1
    (R_j = L_j L_j') for the AR(1) and table kinds, the symmetric square root of R_j^-1
    for exchangeable. Arguments as in cluster_sums.
    """
