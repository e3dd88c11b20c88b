"""The fitted linear mixed model: estimates, inference, random effects,
predictions and diagnostics, named as lme4 and statsmodels users expect."""

from __future__ import annotations

import copy
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multilevel.errors import require_rows
from multilevel.frames import as_pandas, vector_argument
from multilevel.inference import coefficient_table, standard_errors, wald_conf_int
from multilevel.inference.ddf import DdfMethod, check_contrasts, check_ddf, f_table, t_pvalues
from multilevel.inference.kenward_roger import KenwardRoger, kenward_roger
from multilevel.inference.lmm_ddf import lmm_ddf_method
from multilevel.inference.satterthwaite import VarparSensitivity, varpar_sensitivity
from multilevel.inference.wald import covariance_from_rx, prediction_with_se
from multilevel.lmm.conditional import full_conditional_covariances
from multilevel.lmm.design import LmmDesign
from multilevel.lmm.theta import term_lambdas, theta_lower_bounds, theta_names, theta_scales
from multilevel.optimize import OptSummary
from multilevel.tidy_methods import TidyMethods

SINGULAR_TOL = 1e-4  # lme4's isSingular tolerance on theta's diagonal elements (here in theta_scales units)

if TYPE_CHECKING:
    from multilevel.inference.bootstrap import BootstrapResult
    from multilevel.inference.profile import LmmProfile
    from multilevel.lmm.summary import LmmSummary


class LmmResult(TidyMethods):
    """A fitted linear mixed model.

    Built by :func:`multilevel.lmm` or :func:`multilevel.fit_lmm`. Fixed
    effects are in ``params`` (alias ``fixef``) with Wald ``bse``,
    ``tvalues`` (alias ``zvalues``) and normal-approximation ``pvalues``; variance components
    in ``varcorr``, ``theta`` and ``sigma``; conditional modes in ``ranef``.
    """

    #: Whether the model has a residual variance sigma^2 (GLMMs of binomial and Poisson rows do not).
    has_residual = True

    def __init__(self, design: LmmDesign, core: Any, reml: bool, optsum: OptSummary) -> None:
        self.design = design
        self.reml = reml
        self.optsum = optsum
        self._core = core
        self._theta = np.asarray(optsum.final, dtype=float)
        sol = core.solve(self._theta, reml)
        self._beta = np.asarray(sol["beta"])
        self._rx = np.asarray(sol["RX"])
        self._b = [np.asarray(b) for b in sol["b"]]
        self.sigma: float = float(sol["sigma"])
        self.objective: float = float(sol["objective"])

    # ----- estimates -------------------------------------------------------
    @property
    def nobs(self) -> int:
        return self.design.nobs

    @cached_property
    def params(self) -> pd.Series:
        """Fixed-effect estimates, named as formulaic names the columns."""
        return pd.Series(self._beta, index=self.design.fixed_names, name="params")

    @property
    def fixef(self) -> pd.Series:
        """Alias of :attr:`params` (lme4's name)."""
        return self.params

    def unadjusted_cov(self) -> np.ndarray:
        """``sigma^2 (X' V^-1 X)^-1`` as an array, whatever the ddf method."""
        return self.sigma**2 * covariance_from_rx(self._rx)

    def cov_params(self) -> pd.DataFrame:
        """Covariance of the fixed effects, ``sigma^2 (X' V^-1 X)^-1``; Kenward-Roger's
        adjusted covariance after ``with_ddf("kenward-roger")``."""
        names = self.design.fixed_names
        return pd.DataFrame(self._ddf_method().cov, index=names, columns=names)

    @property
    def bse(self) -> pd.Series:
        return standard_errors(self.cov_params()).rename("bse")

    # ----- denominator degrees of freedom ----------------------------------
    #: The ddf method of ``df``, ``tvalues``, ``pvalues``, ``conf_int()`` and ``coef_table()``.
    ddf: str = "normal"

    #: ``"model"`` (the model's covariance) or a cluster-robust kind after :meth:`with_cov_type`.
    cov_type: str = "model"
    _cluster_robust: Any = None

    def with_cov_type(self, kind: str, cluster: Any = None) -> LmmResult:
        """The same fit with cluster-robust (sandwich) standard errors, as clubSandwich's ``vcovCR``.

        Parameters
        ----------
        kind : {"CR0", "CR1", "CR2", "model"}
            CR2 is Bell and McCaffrey's bias-reduced sandwich; ``"model"``
            returns to the model-based covariance.
        cluster : str or array, optional
            A grouping factor of the model, or one label per row; default the
            outermost grouping factor (the one with fewest levels). Every
            grouping factor must be nested in the clusters.

        Returns
        -------
        LmmResult
            The same fit whose ``cov_params()``, ``bse``, ``tvalues``,
            ``pvalues``, ``conf_int()``, ``coef_table()``, ``anova()``,
            ``ftest()`` and summary use the sandwich; ``df`` are clubSandwich's
            Satterthwaite df, F tests its HTZ test.

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> robust = fit.with_cov_type("CR2")
        >>> round(float(robust.bse["Days"]), 3), round(float(robust.df["Days"]), 1)
        (1.546, 17.0)
        """
        from multilevel.inference.cluster_robust import cluster_robust

        other = copy.copy(self)
        if kind == "model":
            other.cov_type, other._cluster_robust = "model", None
            return other
        other._cluster_robust = cluster_robust(self, kind, cluster)
        other.cov_type = kind
        return other

    def _ddf_method(self, method: str | None = None) -> DdfMethod:
        """The ddf method, computed once per fit and shared by the fit's ``with_ddf`` copies.

        A cluster-robust covariance (``with_cov_type``) brings its own tests and takes precedence.
        """
        if self._cluster_robust is not None:
            return self._cluster_robust
        name = check_ddf(self.ddf if method is None else method)
        cache = self.__dict__.setdefault("_ddf_cache", {})
        if name not in cache:
            cache[name] = lmm_ddf_method(self, name)
        return cache[name]

    def _varpar_sensitivity(self) -> VarparSensitivity:
        """What Satterthwaite's df need: the deviance's curvature and cov(beta)'s slopes in the
        variance parameters (theta and sigma here)."""
        return varpar_sensitivity(self._core, self._theta, self.sigma, self.reml)

    def _kenward_roger(self) -> KenwardRoger:
        """Kenward-Roger's ingredients at this REML fit (the rows are read)."""
        return kenward_roger(self.design, term_lambdas(self.design.terms, self._theta), self.sigma)

    def _ml_refit(self) -> LmmResult:
        """The same model fitted by ML on this fit's core (the rows are not read again)."""
        from multilevel.lmm.fit import fit_core

        return fit_core(self.design, self._core.copy(), reml=False, start=self.theta.to_numpy())

    def _relative_residual_cov(self, rows: np.ndarray) -> np.ndarray:
        """``Var(e) / sigma^2`` of the given rows: ``W^-1`` (prior weights) or the identity."""
        w = self.design.weights
        return np.diag(1.0 / np.asarray(w, dtype=float)[rows]) if w is not None else np.eye(rows.size)

    def with_ddf(self, method: str) -> LmmResult:
        """The same fit with t and F tests on ``method``'s denominator degrees of freedom.

        Parameters
        ----------
        method : {"satterthwaite", "kenward-roger", "normal"}
            Satterthwaite's approximation (lmerTest), Kenward-Roger's (pbkrtest;
            REML fits; it also adjusts ``cov_params()`` and ``bse``), or the
            normal distribution (the default of a fit, as lme4 and statsmodels).

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> round(float(fit.with_ddf("satterthwaite").df["Days"]), 2)
        17.0
        """
        self._ddf_method(method)  # compute (and check) before copying, so copies share it
        other = copy.copy(self)
        other.ddf = check_ddf(method)
        return other

    @property
    def df(self) -> pd.Series:
        """Denominator degrees of freedom per coefficient (infinite for ``ddf="normal"``)."""
        method = self._ddf_method()
        p = len(self._beta)
        return pd.Series([method.contrast_df(e) for e in np.eye(p)], index=self.design.fixed_names, name="df")

    @property
    def tvalues(self) -> pd.Series:
        """Wald statistics ``params / bse``; t statistics with :attr:`df` after ``with_ddf``
        (the same numbers as :attr:`zvalues`, whatever the reference distribution)."""
        return (self.params / self.bse).rename("tvalues")

    @property
    def zvalues(self) -> pd.Series:
        """Wald statistics ``params / bse``, the same numbers as :attr:`tvalues`: named z for
        the default ``ddf="normal"``, whose p-values use the normal distribution."""
        return (self.params / self.bse).rename("zvalues")

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided p-values of the t values: against the t distribution with :attr:`df`
        after ``with_ddf``, else against the normal (as statsmodels' MixedLM and MixedModels.jl)."""
        return pd.Series(t_pvalues(self.tvalues.to_numpy(), self.df.to_numpy()),
                         index=self.design.fixed_names, name="pvalues")

    def conf_int(self, alpha: float = 0.05, *, level: float | None = None, method: str = "wald",
                 parameters: list[str] | None = None, nsim: int = 500, seed: Any = None) -> pd.DataFrame:
        """Confidence intervals.

        Parameters
        ----------
        alpha : float, default 0.05
        level : float, optional
            Coverage, ``1 - alpha`` (lme4's name); overrides ``alpha``.
        method : {"wald", "profile", "boot"}
            ``"wald"``: the fixed effects, ``params +/- t_{df, 1-alpha/2} bse``
            (normal quantiles for ``ddf="normal"``). ``"profile"``: lme4's
            ``confint(method = "profile", oldNames = FALSE)``: rows for every
            random-effect standard deviation and correlation, sigma, then the
            fixed effects, from the profiled ML deviance (see :meth:`profile`).
            ``"boot"``: the same rows, percentile intervals of a parametric
            bootstrap of ``nsim`` replicates (see :meth:`bootstrap`).
        parameters : list of str, optional
            For ``"profile"`` and ``"boot"``: only these rows (names as in the full table).
        nsim, seed : for ``"boot"``: replicates (lme4's default 500) and their seed

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> ci = fit.conf_int(method="profile", parameters=["sigma"])
        >>> [round(float(v), 2) for v in ci.loc["sigma"]]
        [22.9, 28.86]
        """
        alpha = 1.0 - level if level is not None else alpha
        if method == "profile":
            return self.profile().conf_int(1.0 - alpha, parameters)
        if method == "boot":
            table = self.bootstrap(nsim, seed=seed).conf_int(1.0 - alpha)
            return table if parameters is None else table.loc[parameters]
        if method != "wald":
            raise ValueError(f"unknown method {method!r}; choose 'wald', 'profile' or 'boot'")
        return wald_conf_int(self.params, self.bse, alpha, df=self.df.to_numpy())

    def bootstrap(self, nsim: int, *, seed: Any = None, kind: str = "parametric", threads: int | None = None,
                  statistic: Any = None) -> BootstrapResult:
        """Parametric bootstrap, as lme4's ``bootMer``: simulate from the fit, refit on the same design.

        Parameters
        ----------
        nsim : int
            Number of replicates.
        seed : int or SeedSequence entropy, optional
            The replicates depend on ``seed`` only (not on ``threads``).
        kind : "parametric"
        threads : int, optional
            Replicates fitted at once (default: :func:`multilevel.get_num_threads`).
        statistic : callable, optional
            Function of a replicate's :class:`LmmResult` returning a Series or
            array; default the sd/cor/sigma/fixed-effect rows of ``conf_int``.

        Returns
        -------
        BootstrapResult
            ``replicates`` (nsim rows), ``estimate`` and ``conf_int(level, kind)``
            with kinds ``"percentile"``, ``"basic"``, ``"normal"``.

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> boot = fit.bootstrap(20, seed=1)
        >>> boot.replicates.shape
        (20, 6)
        """
        from multilevel.inference.bootstrap import parametric_bootstrap

        if kind != "parametric":
            raise ValueError(f"unknown kind {kind!r}; only 'parametric' is available")
        return parametric_bootstrap(self, nsim, seed=seed, threads=threads, statistic=statistic)

    def profile(self) -> LmmProfile:
        """The profiled ML deviance in lme4's parameters (a REML fit is refitted by ML first, as lme4 does).

        Its ``conf_int(level)`` gives profile intervals and ``trace(name)`` the
        values visited with their ``zeta`` (for plotting). The ML refit reuses
        this fit's core: the rows are not read again. With a residual correlation structure or
        variance function the correlation and variance parameters follow sigma.
        """
        from multilevel.inference.lrt import ml_refit

        cache = self.__dict__.setdefault("_profile_cache", {})
        if "profile" not in cache:
            cache["profile"] = self._new_profile(ml_refit(self) if self.reml else self)
        return cache["profile"]

    def _new_profile(self, ml_fit: LmmResult) -> LmmProfile:
        from multilevel.inference.profile import LmmProfile

        return LmmProfile(ml_fit)

    def coef_table(self) -> pd.DataFrame:
        """The coefficient table, in R's names: the statistic is named after the distribution of
        its p-value (the rule of every family's ``coef_table``).

        With the default ``ddf="normal"`` (and the model's covariance) the p-values use the
        normal distribution: ``Estimate``, ``Std. Error``, ``z value``, ``Pr(>|z|)`` (lme4
        prints the same ratio as ``t value``, without p-values). With a ddf method
        (``with_ddf``) or a cluster-robust covariance (``with_cov_type``): ``Estimate``,
        ``Std. Error``, ``df``, ``t value``, ``Pr(>|t|)``, as lmerTest and clubSandwich.
        """
        if self.ddf == "normal" and self.cov_type == "model":
            return coefficient_table(self.params, self.bse)
        return coefficient_table(self.params, self.bse, self.df.to_numpy())

    def ftest(self, L: Any, *, ddf: str | None = None) -> pd.DataFrame:
        """F test of ``L beta = 0`` (lmerTest's ``contestMD``).

        Parameters
        ----------
        L : (q, p) array, or a frame whose columns are coefficient names
        ddf : {"satterthwaite", "kenward-roger", "normal"}, optional
            Default: the fit's method after ``with_ddf``, else Satterthwaite.

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> round(float(fit.ftest([[0, 1]])["F value"].iloc[0]), 2)
        45.85
        """
        contrasts = check_contrasts(L, self.design.fixed_names)
        method = self._ddf_method(ddf if ddf is not None else ("satterthwaite" if self.ddf == "normal" else None))
        return f_table(method, {"L": contrasts}, self._beta, self.sigma)

    def anova(self, ddf: str = "satterthwaite", type: int | str = 3) -> pd.DataFrame:
        """F tests of the model's fixed terms, as lmerTest's ``anova(fit, type, ddf)``.

        Parameters
        ----------
        ddf : {"satterthwaite", "kenward-roger", "normal"}
        type : 1 or 3
            Sequential (1) or marginal (3, SAS's definition) hypotheses.

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> fit.anova().columns.tolist()
        ['Sum Sq', 'Mean Sq', 'NumDF', 'DenDF', 'F value', 'Pr(>F)']
        """
        from multilevel.inference.term_contrasts import term_contrasts

        hypotheses = term_contrasts(self.design, type)
        return f_table(self._ddf_method(ddf), hypotheses, self._beta, self.sigma)

    # ----- variance components --------------------------------------------
    @property
    def theta(self) -> pd.Series:
        """Relative covariance factors, lme4's order (lower triangle by column per term)."""
        return pd.Series(self._theta, index=theta_names(self.design.terms), name="theta")

    def covariance_matrices(self) -> list[np.ndarray]:
        """Covariance matrix ``sigma^2 lambda lambda'`` of each term's random effects."""
        return [self.sigma**2 * lam @ lam.T for lam in term_lambdas(self.design.terms, self._theta)]

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components: one row per variance (``term2`` empty) and per
        correlation, then the residual, like lme4's ``as.data.frame(VarCorr(.))``."""
        rows = []
        for t, cov in zip(self.design.terms, self.covariance_matrices()):
            sd = np.sqrt(np.diag(cov))
            for i in range(t.p):
                rows.append((t.group, t.columns[i], None, cov[i, i], sd[i], np.nan))
            for j in range(t.p):
                for i in range(j + 1, t.p):
                    corr = cov[i, j] / (sd[i] * sd[j]) if sd[i] > 0 and sd[j] > 0 else np.nan
                    rows.append((t.group, t.columns[j], t.columns[i], cov[i, j], np.nan, corr))
        if self.has_residual:
            rows.append(("Residual", None, None, self.sigma**2, self.sigma, np.nan))
        return pd.DataFrame(rows, columns=["group", "term1", "term2", "variance", "sd", "corr"])

    @property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor."""
        return {t.group: t.nlevels for t in self.design.terms}

    @cached_property
    def singular(self) -> bool:
        """True when a variance is on the boundary or a covariance matrix is singular (computed once: the
        natural scales are a pass over the terms' columns)."""
        lower = theta_lower_bounds(self.design.terms)
        # relative to each entry's natural scale, so rescaling a predictor does not change the verdict
        diagonal = lower == 0.0
        return bool(np.any(self._theta[diagonal] / theta_scales(self.design.terms)[diagonal] < SINGULAR_TOL))

    @property
    def converged(self) -> bool:
        return self.optsum.converged

    # ----- likelihood ------------------------------------------------------
    @property
    def loglik(self) -> float:
        """Log-likelihood at the optimum (the REML log-likelihood for REML fits)."""
        return -0.5 * self.objective

    @property
    def deviance(self) -> float:
        """-2 log-likelihood; the REML criterion for REML fits."""
        return self.objective

    @property
    def df_model(self) -> int:
        """Number of estimated parameters: fixed effects, theta and sigma."""
        return len(self._beta) + self._theta.size + 1

    @property
    def aic(self) -> float:
        return self.objective + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        return self.objective + np.log(self.nobs) * self.df_model

    # ----- random effects --------------------------------------------------
    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes (BLUPs) per grouping factor: levels x term columns.

        Terms sharing a grouping factor (``(x || g)``) are joined in one frame.
        """
        out: dict[str, pd.DataFrame] = {}
        for t, b in zip(self.design.terms, self._b):
            frame = pd.DataFrame(b.T, index=t.levels, columns=t.columns)
            out[t.group] = frame if t.group not in out else pd.concat([out[t.group], frame], axis=1)
        return out

    def ranef_condvar(self, full: bool = False) -> dict[str, pd.DataFrame] | dict[str, np.ndarray]:
        """Conditional (co)variances of the random effects given the data, theta and beta (lme4's ``condVar``).

        Parameters
        ----------
        full : bool
            False (default): the variances, laid out like :attr:`ranef` (a frame per grouping factor,
            levels x columns). True: the whole covariance matrix of each level's random effects, as
            lme4's ``postVar`` attribute: per grouping factor a ``(nlevels, p, p)`` array, levels in the
            order of ``ranef[group].index`` and rows/columns in the order of ``ranef[group].columns``
            (terms in formula order, each term's columns in order). Terms sharing a grouping factor
            (``(x || g)``) give one ``p x p`` matrix per level that includes the covariances between the
            terms: they are uncorrelated a priori but not given the data (lme4 reports only each term's
            block; those blocks agree). That needs one more pass over the rows.

        Returns
        -------
        dict of DataFrame, or dict of (nlevels, p, p) arrays

        Examples
        --------
        >>> from multilevel import lmm
        >>> from multilevel.datasets import load_dataset
        >>> fit = lmm("Reaction ~ Days + (Days | Subject)", load_dataset("sleepstudy"))
        >>> cv = fit.ranef_condvar(full=True)["Subject"]
        >>> cv.shape, [round(float(v), 3) for v in cv[0].ravel()]
        ((18, 2, 2), [145.705, -21.444, -21.444, 5.312])
        """
        self._core.solve(self._theta, self.reml)  # the core's factor must be at theta
        terms = self.design.terms
        if full:
            rows = None
            if self.design.has_rows:
                def rows() -> tuple[list[np.ndarray], np.ndarray | None]:
                    return [t.z for t in terms], self.design.weights
            return full_conditional_covariances(terms, self._theta, self.sigma, self._core, rows)
        out: dict[str, pd.DataFrame] = {}
        for k, t in enumerate(terms):
            cv = np.asarray(self._core.conditional_variance(k, self.sigma))
            # cv is (p, p * nlevels), one p x p block per level: take every block's diagonal at once
            diag = np.einsum("igi->gi", cv.reshape(t.p, t.nlevels, t.p))
            frame = pd.DataFrame(diag, index=t.levels, columns=t.columns)
            out[t.group] = frame if t.group not in out else pd.concat([out[t.group], frame], axis=1)
        return out

    def icc(self) -> pd.Series:
        """Intraclass correlation per random-intercept term:
        ``var_k / (sum of intercept variances + sigma^2)``.

        For terms with random slopes the intercept variance is the variance at
        covariates equal to zero, so the ICC then depends on their centring.
        """
        variances = {}
        for t, cov in zip(self.design.terms, self.covariance_matrices()):
            if "Intercept" in t.columns:
                i = t.columns.index("Intercept")
                variances[t.group] = variances.get(t.group, 0.0) + cov[i, i]
        if not variances:
            raise ValueError("the model has no random-intercept term; the ICC is not defined")
        total = sum(variances.values()) + self.sigma**2
        return pd.Series({g: v / total for g, v in variances.items()}, name="icc")

    def _require_rows(self, what: str, instead: str) -> None:
        require_rows(self.design, what, instead)

    def marginal_cov(self, level: Any, group: str | None = None) -> pd.DataFrame:
        """Marginal covariance ``Z_j Sigma_b Z_j' + sigma^2 W_j^-1`` of the rows of one cluster (``W``: the
        prior weights; with a residual structure ``Sigma_e,j = sigma^2 G_j R_j G_j`` in place of the last term).

        Parameters
        ----------
        level : label of the cluster (a level of ``group``)
        group : grouping factor; may be omitted when the model has one
        """
        self._require_rows("marginal_cov()", "build the cluster's rows in memory and fit them, or use covariance_matrices()")
        groups = list(dict.fromkeys(t.group for t in self.design.terms))
        if group is None:
            if len(groups) > 1:
                raise ValueError(f"the model has several grouping factors {groups}; pass group=")
            group = groups[0]
        term = next((t for t in self.design.terms if t.group == group), None)
        if term is None:
            raise ValueError(f"{group!r} is not a grouping factor of the model; choose one of {groups}")
        idx = term.levels.get_indexer([level])[0]
        if idx < 0:
            raise ValueError(f"{level!r} is not a level of {group!r}")
        rows = np.nonzero(term.codes == idx)[0]
        v = self.sigma**2 * self._relative_residual_cov(rows)
        for t, cov in zip(self.design.terms, self.covariance_matrices()):
            z = t.z[rows]
            same = t.codes[rows][:, None] == t.codes[rows][None, :]
            v += (z @ cov @ z.T) * same
        labels = self.design.row_index[rows] if self.design.row_index is not None else rows
        return pd.DataFrame(v, index=labels, columns=labels)

    # ----- fitted values and prediction -----------------------------------
    def _random_part(self, terms_z_codes: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        total = 0.0
        for (z, codes), b in zip(terms_z_codes, self._b):
            known = codes >= 0
            contrib = np.zeros(z.shape[0])
            contrib[known] = np.einsum("ij,ji->i", z[known], b[:, codes[known]])
            total = total + contrib
        return total

    @staticmethod
    def _new_codes(term: Any, df: pd.DataFrame, allow_new_levels: bool) -> np.ndarray:
        """Codes of new rows' levels of ``term``; unseen levels are an error unless allowed."""
        missing = [c for c in (term.factors or ()) if c not in df.columns]
        if missing:
            raise ValueError(f"newdata has no column {missing[0]!r}, the grouping factor of {term.label}; add it, "
                             "or predict with re=False for the population level")
        codes = term.codes_for(df)
        if not allow_new_levels and (codes < 0).any():
            rows = np.flatnonzero(codes < 0)
            keys = df.iloc[rows][list(term.factors)].astype(str).agg(":".join, axis=1).unique()
            shown = ", ".join(repr(k) for k in keys[:5]) + (", ..." if len(keys) > 5 else "")
            raise ValueError(f"{len(rows)} row(s) of newdata have levels of {term.group!r} not in the fit ({shown}); "
                             "pass allow_new_levels=True to predict them with a random effect of 0")
        return codes

    def _index(self) -> pd.Index:
        return self.design.row_index if self.design.row_index is not None else pd.RangeIndex(self.nobs)

    def fitted(self) -> pd.Series:
        """Conditional fitted values ``X beta + Z b (+ offset)`` for the rows used."""
        self._require_rows("fitted()", "call predict(chunk) on the rows wanted")
        d = self.design
        fit = d.X @ self._beta + self._random_part([(t.z, t.codes) for t in d.terms])
        if d.offset is not None:
            fit = fit + d.offset
        return pd.Series(fit, index=self._index(), name="fitted")

    def resid(self, newdata: Any = None) -> pd.Series:
        """Response residuals ``y - fitted``, for the rows of the fit or for ``newdata`` (with the response)."""
        if newdata is not None:
            df = as_pandas(newdata)
            y = self._response_of(df)
            return pd.Series(y - self.predict(df).to_numpy(), index=df.index, name="resid")
        self._require_rows("resid()", "call resid(chunk) on the rows wanted")
        return pd.Series(self.design.y - self.fitted().to_numpy(), index=self._index(), name="resid")

    def _response_of(self, df: pd.DataFrame) -> np.ndarray:
        import formulaic

        if self.design.fixed is None:
            raise ValueError("this model was fit from arrays; resid(newdata) needs a formula fit")
        lhs = formulaic.model_matrix(f"{self.design.response} ~ 1", df, na_action="ignore", output="numpy").lhs
        return np.asarray(lhs, dtype=float)[:, 0]

    def predict(self, newdata: Any = None, *, re: bool = True, offset: Any = None,
                allow_new_levels: bool = False, se: bool = False) -> pd.Series | pd.DataFrame:
        """Predictions for new data.

        Parameters
        ----------
        newdata : data frame, optional
            Rows to predict; default the rows of the fit (then ``fitted()``).
        re : bool
            Add the random effects of the rows' levels; ``False`` gives ``X beta`` only.
        offset : column name or array, optional
            Offset for the new rows; if the fit used an offset column of that
            name it is taken from ``newdata``.
        allow_new_levels : bool, default False
            As lme4's ``allow.new.levels``: a level of a grouping factor not
            seen in the fit is an error naming it, unless this is True; then
            its random effect is 0 (the population-level prediction).
        se : bool, default False
            Return a frame with ``fit`` (``X beta + offset``) and ``se.fit``
            (from :meth:`cov_params`) instead: standard errors of the fixed
            part, so it needs ``re=False``.
        """
        if se:
            if re:
                raise ValueError("se=True gives standard errors of the fixed part X beta; pass re=False")
            point = self.predict(newdata, re=False, offset=offset)
            X = self.design.X if newdata is None else self.design.fixed.model_matrix(as_pandas(newdata))
            return prediction_with_se(X, self._beta, self.cov_params().to_numpy(), point.index,
                                      point.to_numpy() - X @ self._beta)
        if newdata is None:
            self._require_rows("predict() without newdata", "pass the rows wanted: predict(chunk)")
            if re:
                return self.fitted()
            fit = self.design.X @ self._beta + (0 if self.design.offset is None else self.design.offset)
            return pd.Series(fit, index=self._index(), name="predicted")
        if self.design.fixed is None:
            raise ValueError("this model was fit from arrays; predict(newdata) needs a formula fit")
        df = as_pandas(newdata)
        pred = self.design.fixed.model_matrix(df) @ self._beta
        if re:
            pred = pred + self._random_part([(t.z_for(df), self._new_codes(t, df, allow_new_levels))
                                             for t in self.design.terms])
        formula_offset = self.design.fixed.offset_for(df)  # the formula's offset(...) terms
        if formula_offset is not None:
            pred = pred + formula_offset
        off = offset if offset is not None else self.design.extra.get("offset_column")
        if off is not None:
            vals, _ = vector_argument(off, df, "offset")
            pred = pred + vals
        elif self.design.extra.get("offset_argument"):
            raise ValueError("the model was fitted with an offset array; pass offset= for newdata")
        return pd.Series(pred, index=df.index, name="predicted")

    # ----- printing --------------------------------------------------------
    def summary(self) -> LmmSummary:
        """lme4-style summary; prints as text, renders as HTML in notebooks."""
        from multilevel.lmm.summary import LmmSummary

        return LmmSummary(self)

    def __repr__(self) -> str:
        kind = "REML" if self.reml else "ML"
        return f"<LmmResult {kind}: {self.design.formula or 'array design'}, nobs={self.nobs}>"

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()
