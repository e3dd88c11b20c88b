"""The fitted GEE: estimates, the four covariance estimators, Wald tests,
QIC, prediction and residuals."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.correlation import CorrelationStructure, Independence
from multilevel.errors import require_rows
from multilevel.families import Family
from multilevel.frames import as_pandas
from multilevel.inference import coefficient_table, normal_pvalues, standard_errors, wald_conf_int
from multilevel.tidy_methods import TidyMethods

if TYPE_CHECKING:
    from multilevel.gee.design import GeeDesign
    from multilevel.gee.scoring import WorkingArrays
    from multilevel.gee.summary import GeeSummary

COV_TYPES = ("robust", "naive", "bias_reduced", "jackknife")


@dataclass(frozen=True)
class WaldTest:
    """A Wald chi-square test of ``L beta = 0``."""

    statistic: float
    df: int
    pvalue: float
    names: tuple[str, ...]
    cov_type: str

    def __repr__(self) -> str:
        return (f"WaldTest(X2={self.statistic:.6g}, df={self.df}, p={self.pvalue:.4g}, "
                f"coefficients={list(self.names)}, cov_type={self.cov_type!r})")


class GeeResult(TidyMethods):
    """A fitted generalized estimating equations model (see :func:`multilevel.gee`).

    Attributes
    ----------
    params : Series of coefficients
    scale : float, the estimated (or fixed) ``phi``
    corr_params : ndarray, the working-correlation parameters (one for
        exchangeable and ar1; the lower triangle by column for unstructured;
        lags 1..m for MDependent; empty for independence and Fixed)
    n_iter : int, Fisher-scoring iterations
    converged : bool
    moments : str, whose moment estimators gave ``scale`` and ``corr_params`` ("geepack" or "gee")
    fit_notes : tuple of str, the warnings the fit gave (alpha kept inside its bounds, no convergence)
    cov_type : str, the covariance behind ``bse``, ``pvalues``, ``conf_int``
        (switch with :meth:`with_cov_type`)
    """

    #: Defaults for results pickled before these attributes existed.
    moments: str = "geepack"
    fit_notes: tuple[str, ...] = ()

    def __init__(self, *, design: GeeDesign, family: Family, structure: CorrelationStructure,
                 params_array: np.ndarray, scale: float, corr_params: np.ndarray, information: np.ndarray,
                 meat: np.ndarray, working: WorkingArrays | None, n_iter: int, converged: bool, cov_type: str,
                 scale_fixed: bool, meats: dict[str, np.ndarray] | None = None,
                 quasi_loglik: float | None = None, rows: Any = None, moments: str = "geepack",
                 fit_notes: tuple[str, ...] = ()) -> None:
        self.design = design
        self.family = family
        self.structure = structure
        self.params = pd.Series(params_array, index=design.names, name="params")
        self.scale = float(scale)
        self.corr_params = np.asarray(corr_params, dtype=float)
        self.n_iter = int(n_iter)
        self.converged = bool(converged)
        self.scale_fixed = scale_fixed
        self.moments = moments
        self.fit_notes = tuple(fit_notes)
        self._information = information
        self._meat = meat
        self._working = working
        # Fits from chunked data keep no rows: the meats and the quasi-likelihood
        # come computed, and `rows` re-reads the data for QIC's independence refit.
        self._meats = dict(meats or {})
        self._quasi_loglik = quasi_loglik
        self._rows = rows
        self._cov_cache: dict[str, np.ndarray] = {}
        self.cov_type = _check_cov_type(cov_type)

    # -- sizes ---------------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.nobs

    @property
    def nclusters(self) -> int:
        return self.design.layout.nclusters

    @property
    def cluster_sizes(self) -> pd.Series:
        """Number of rows per cluster."""
        return pd.Series(self.design.layout.sizes, index=self.design.cluster_labels, name="size")

    # -- covariances ---------------------------------------------------------
    def cov_params(self, kind: str | None = None) -> pd.DataFrame:
        """Covariance of the coefficients: ``"robust"`` (sandwich), ``"naive"`` (model-based),
        ``"bias_reduced"`` (Mancl-DeRouen) or ``"jackknife"``; default: :attr:`cov_type`."""
        kind = self.cov_type if kind is None else _check_cov_type(kind)
        if kind not in self._cov_cache:
            self._cov_cache[kind] = self._compute_cov(kind)
        names = self.design.names
        return pd.DataFrame(self._cov_cache[kind], index=names, columns=names)

    def _compute_cov(self, kind: str) -> np.ndarray:
        from multilevel.gee.scoring import MEAT_BIAS_REDUCED, MEAT_JACKKNIFE, scoring_sums

        h_inv = np.linalg.inv(self._information)
        h_inv = 0.5 * (h_inv + h_inv.T)
        if kind == "naive":
            return h_inv
        if kind == "robust":
            meat = self._meat
        else:
            which = MEAT_BIAS_REDUCED if kind == "bias_reduced" else MEAT_JACKKNIFE
            meat = self._meats[kind] if kind in self._meats else scoring_sums(
                self._data_rows(), self.family, self.structure, self.corr_params, self.scale,
                self.params.to_numpy(), meat=which, h_full=self._information).M
            if kind == "jackknife":
                # geepack's approximate jackknife: (K - p - q - 1) / K sum_j d_j d_j',
                # d_j = (H - H_j)^-1 U_j, q correlation parameters and 1 for the scale.
                k, p, q = self.nclusters, len(self.params), len(self.corr_params)
                return (k - p - q - 1) / k * meat
        cov = h_inv @ meat @ h_inv
        return 0.5 * (cov + cov.T)

    def _data_rows(self) -> Any:
        """Where the rows are: the in-memory design, or the chunked data of a streamed fit."""
        from multilevel.gee.scoring import DesignRows

        if self._rows is not None:
            return self._rows
        if not getattr(self.design, "has_rows", True):
            raise ValueError("this fit from chunked data was unpickled without its data source, so it cannot "
                             "re-read the rows (qic() refits with an independence working correlation); "
                             "call qic() before pickling")
        return DesignRows(self.design)

    def __getstate__(self) -> dict[str, Any]:
        """Pickles without the data source of a chunked fit (a reader of files or a generator) and caches."""
        state = dict(self.__dict__)
        state["_rows"] = None
        return state

    def with_cov_type(self, kind: str) -> GeeResult:
        """The same fit reporting another covariance (no refit; computed covariances are shared)."""
        other = copy.copy(self)
        other.cov_type = _check_cov_type(kind)
        return other

    # -- inference -----------------------------------------------------------
    @property
    def bse(self) -> pd.Series:
        """Standard errors from :attr:`cov_type`."""
        return standard_errors(self.cov_params()).rename("bse")

    @property
    def zvalues(self) -> pd.Series:
        """Wald z statistics ``params / bse`` (geepack prints their squares as ``Wald``)."""
        return (self.params / self.bse).rename("zvalues")

    @property
    def tvalues(self) -> pd.Series:
        """The same numbers as :attr:`zvalues` (the name the t-test families use; the p-values stay normal)."""
        return (self.params / self.bse).rename("tvalues")

    @property
    def pvalues(self) -> pd.Series:
        return normal_pvalues(self.zvalues).rename("pvalues")

    def conf_int(self, alpha: float = 0.05) -> pd.DataFrame:
        """Wald confidence intervals from :attr:`cov_type`."""
        return wald_conf_int(self.params, self.bse, alpha)

    def coef_table(self) -> pd.DataFrame:
        """``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)`` per coefficient, from :attr:`cov_type`.

        geepack prints ``Estimate``, ``Std.err``, ``Wald`` (the square of the z value) and
        ``Pr(>|W|)``; the same test, named here as in the other families (normal reference:
        ``z value``, ``Pr(>|z|)``).
        """
        return coefficient_table(self.params, self.bse)

    def wald_test(self, test: Any, cov_type: str | None = None) -> WaldTest:
        """Wald chi-square test that a set of coefficients is zero (or ``L beta = 0``).

        Parameters
        ----------
        test : str, list of str, or (q, p) array
            A formula term (``"smoke"``, ``"C(f)"``: all its columns), a
            coefficient name, a list of coefficient names, or a contrast matrix.
        cov_type : covariance to use (default :attr:`cov_type`)
        """
        L, names = self._contrast(test)
        cov = self.cov_params(cov_type).to_numpy()
        lb = L @ self.params.to_numpy()
        lvl = L @ cov @ L.T
        stat = float(lb @ np.linalg.solve(lvl, lb))
        df = int(np.linalg.matrix_rank(L))
        return WaldTest(stat, df, float(stats.chi2.sf(stat, df)), tuple(names), cov_type or self.cov_type)

    def _contrast(self, test: Any) -> tuple[np.ndarray, list[str]]:
        names = list(self.design.names)
        if isinstance(test, str):
            cols = self.term_columns().get(test)
            if cols is None:
                if test not in names:
                    raise ValueError(f"{test!r} is neither a term ({', '.join(self.term_columns())}) "
                                     f"nor a coefficient ({', '.join(names)})")
                cols = [test]
            test = cols
        if isinstance(test, (list, tuple)) and all(isinstance(t, str) for t in test):
            unknown = [t for t in test if t not in names]
            if unknown:
                raise ValueError(f"unknown coefficient(s) {unknown}; the coefficients are {names}")
            L = np.zeros((len(test), len(names)))
            for i, t in enumerate(test):
                L[i, names.index(t)] = 1.0
            return L, list(test)
        L = np.atleast_2d(np.asarray(test, dtype=float))
        if L.shape[1] != len(names):
            raise ValueError(f"a contrast matrix needs {len(names)} columns, not {L.shape[1]}")
        return L, [f"L{i}" for i in range(L.shape[0])]

    def term_columns(self) -> dict[str, list[str]]:
        """Coefficient names of each formula term (aliased columns left out)."""
        fixed = self.design.fixed
        if fixed is None or fixed.spec is None:
            return {n: [n] for n in self.design.names}
        full = list(fixed.spec.column_names)
        kept = set(self.design.names)
        out: dict[str, list[str]] = {}
        for term, sl in fixed.spec.term_slices.items():
            cols = [c for c in full[sl] if c in kept]
            if cols:
                out["Intercept" if str(term) == "1" else str(term)] = cols
        return out

    def anova(self, cov_type: str | None = None) -> pd.DataFrame:
        """Wald tests of each formula term (all of its coefficients zero, the others free).

        For the last term this is geepack's sequential ``anova``; for the
        others it is the marginal (type III) test.
        """
        rows = {}
        for term in self.term_columns():
            if term == "Intercept":
                continue
            t = self.wald_test(term, cov_type)
            rows[term] = [t.df, t.statistic, t.pvalue]
        return pd.DataFrame.from_dict(rows, orient="index", columns=["Df", "X2", "P(>|Chi|)"])

    # -- QIC -----------------------------------------------------------------
    def quasi_loglik(self) -> float:
        """Quasi-likelihood under independence, ``sum w Q(mu; y)``, at the estimates (no ``phi``, as geepack)."""
        if self._quasi_loglik is not None:
            return self._quasi_loglik
        q = self.family.quasi_loglik(self.design.y, self._working.mu)
        return float(self.design.prior_weights() @ q)

    def qic(self) -> pd.Series:
        """QIC, QICu, CIC and QICC (Pan 2001) as geepack's ``QIC()`` computes them.

        ``CIC = trace(Omega_I V_robust)``, where ``Omega_I`` is the inverse of
        the model-based covariance of the same model refitted with an
        independence working correlation; ``QIC = -2 (Q - CIC)``,
        ``QICu = -2 (Q - p)``, ``QICC = QIC + 2 k (k + 1) / (K - k - 1)`` with
        ``k`` coefficients plus correlation parameters and ``K`` clusters.
        ``Q`` is :meth:`quasi_loglik`. Unlike geepack, prior weights multiply
        ``Q`` and the gamma quasi-likelihood is ``-y/mu - log(mu)``.
        """
        omega = self._independence_information
        cic = float(np.trace(omega @ self.cov_params("robust").to_numpy()))
        q = self.quasi_loglik()
        p = len(self.params)
        k = p + len(self.corr_params)
        qic = -2 * (q - cic)
        return pd.Series({"QIC": qic, "QICu": -2 * (q - p), "Quasi Lik": q, "CIC": cic, "params": p,
                          "QICC": qic + 2 * k * (k + 1) / (self.nclusters - k - 1)})

    @cached_property
    def _independence_information(self) -> np.ndarray:
        """``Omega_I`` of :meth:`qic`: the model-based information of the independence refit."""
        from multilevel.gee.iteration import fisher_scoring

        # The refit's phi comes from the same moment estimators as the fit's (geepack's by default).
        independence = fisher_scoring(self._data_rows(), self.family, Independence(), self.params.to_numpy(),
                                      scale=self.scale if self.scale_fixed else None, maxiter=100, tol=1e-10,
                                      moments=self.moments)
        naive = np.linalg.inv(independence.information)
        return np.linalg.inv(0.5 * (naive + naive.T))

    # -- prediction and residuals ---------------------------------------------
    def fitted(self) -> pd.Series:
        """Fitted means, in the data's row order."""
        require_rows(self.design, "fitted()", "call predict(chunk) on the rows wanted")
        return pd.Series(self._working.mu, index=self.design.row_index, name="fitted")

    def predict(self, newdata: Any = None, which: str = "mean", offset: Any = None) -> pd.Series:
        """Predicted means (``which="mean"``) or linear predictors (``"linear"``).

        ``newdata=None`` gives the fitted values. An offset given as a column
        at fit time is read from ``newdata``; otherwise pass ``offset=``.
        """
        if which not in ("mean", "linear"):
            raise ValueError(f"which must be 'mean' or 'linear', not {which!r}")
        if newdata is None:
            require_rows(self.design, "predict() without newdata", "pass the rows wanted: predict(chunk)")
            eta, index = self._working.eta, self.design.row_index
        else:
            df = as_pandas(newdata)
            X = self.design.fixed.model_matrix(df)
            eta = X @ self.params.to_numpy()
            formula_offset = self.design.fixed.offset_for(df)  # the formula's offset(...) terms
            if formula_offset is not None:
                eta = eta + formula_offset
            if offset is not None:
                eta = eta + (df[offset].to_numpy(float) if isinstance(offset, str) else np.asarray(offset, float))
            elif self.design.offset_column is not None:
                eta = eta + df[self.design.offset_column].to_numpy(float)
            elif self.design.offset_argument:
                raise ValueError("the model was fitted with an offset array; pass offset= for newdata")
            index = df.index
        values = eta if which == "linear" else self.family.link.inverse(eta)
        return pd.Series(values, index=index, name=which)

    def resid(self, kind: str = "response") -> pd.Series:
        """Residuals: ``"response"`` ``y - mu``, ``"pearson"`` ``(y - mu) sqrt(w / v(mu))``,
        ``"working"`` ``(y - mu) / (dmu/deta)``."""
        require_rows(self.design, "resid()", "compute chunk[response] - predict(chunk) on the rows wanted")
        wa = self._working
        y = self.design.y
        if kind == "response":
            r = y - wa.mu
        elif kind == "pearson":
            r = wa.pearson
        elif kind == "working":
            r = (y - wa.mu) / self.family.link.mu_eta(wa.eta)
        else:
            raise ValueError(f"kind must be 'response', 'pearson' or 'working', not {kind!r}")
        return pd.Series(r, index=self.design.row_index, name=kind)

    # -- display -------------------------------------------------------------
    def summary(self) -> GeeSummary:
        from multilevel.gee.summary import GeeSummary

        return GeeSummary(self)

    def __repr__(self) -> str:
        return (f"<GeeResult {self.family.name}({self.family.link.name}), {self.structure.name}: "
                f"{self.nobs} rows in {self.nclusters} clusters, converged={self.converged}>")

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


def _check_cov_type(kind: str) -> str:
    if kind not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {', '.join(COV_TYPES)}, not {kind!r}")
    return kind
