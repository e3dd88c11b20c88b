"""Cross-check values from statsmodels' GEE for some of the geepack fixtures.

Run from the repository root::

    python tests/reference/gee_statsmodels.py

It fits models from ``gee.json`` with ``statsmodels.genmod.GEE`` on the
bundled datasets and writes ``tests/reference/gee_statsmodels.json``.  The
estimators that statsmodels uses differ from geepack's (see
GEE_ESTIMATORS.md); this script re-derives statsmodels' scale, exchangeable
correlation and the naive, robust and bias-reduced (Mancl-DeRouen)
covariance matrices with numpy from the fitted values and stops unless they
agree with statsmodels to 1e-10 relative.  ``json`` writes floats with
``repr``, which round-trips doubles exactly.
"""

from __future__ import annotations

import json
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import statsmodels
import statsmodels.api as sm
from statsmodels.genmod import cov_struct as cs
from statsmodels.genmod import families

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
from multilevel.datasets import load_dataset  # noqa: E402

OUT = ROOT / "tests" / "reference" / "gee_statsmodels.json"
TOL = 1e-10


def design(data: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """Intercept plus the given terms; factors get R's treatment contrasts
    (first level dropped), named like R ('trtprogabide', 'CuCu035')."""
    cols = {"(Intercept)": np.ones(len(data))}
    for term in terms:
        x = data[term]
        if isinstance(x.dtype, pd.CategoricalDtype):
            for level in x.cat.categories[1:]:
                cols[f"{term}{level}"] = (x == level).to_numpy(dtype=float)
        else:
            cols[term] = x.to_numpy(dtype=float)
    return pd.DataFrame(cols)


# key -> (geepack fixture key, dataset, response, terms, groups, family, cov_struct factory)
MODELS = {
    "ohio_exch": ("ohio_exch", "ohio", "resp", ["age", "smoke"], "id",
                  families.Binomial, cs.Exchangeable),
    "ohio_indep": ("ohio_indep", "ohio", "resp", ["age", "smoke"], "id",
                   families.Binomial, cs.Independence),
    "epil_exch": ("epil_exch", "epil", "y", ["lbase", "trt", "lage", "V4"], "subject",
                  families.Poisson, cs.Exchangeable),
    "epil_indep": ("epil_indep", "epil", "y", ["lbase", "trt", "lage", "V4"], "subject",
                   families.Poisson, cs.Independence),
    "dietox_exch": ("dietox_exch", "dietox", "Weight", ["Time", "Cu"], "Pig",
                    families.Gaussian, cs.Exchangeable),
}

# Variants: statsmodels' defaults, the Pearson-X2 scale for the fixed-scale
# families, and a tightly converged fit.
VARIANTS = {
    "default": dict(scale=None, ctol=1e-6, maxiter=60),
    "scale_X2": dict(scale="X2", ctol=1e-6, maxiter=60),
    "tight": dict(scale=None, ctol=1e-10, maxiter=200),
}


def rel(a, b) -> float:
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = np.atleast_2d(np.asarray(b, dtype=float))
    if b.shape[0] == b.shape[1] and b.shape[0] > 1:
        s = np.sqrt(np.abs(np.outer(np.diag(b), np.diag(b))))
    else:
        s = np.abs(b)
    return float(np.max(np.abs(a - b) / s))


def check(key: str, what: str, value: float) -> None:
    if not value < TOL:
        raise SystemExit(f"{key}: numpy re-derivation of {what} disagrees ({value:.3e})")


def rederive(model, result, cov_name: str) -> dict[str, float]:
    """Recompute statsmodels' estimators from the fitted values with numpy."""
    fam = model.family
    X, y = model.exog, model.endog
    groups = model.group_labels
    lab = np.asarray(model.groups)
    N, p = X.shape
    params = np.asarray(result.params)
    out = {}

    def clusters(beta):
        eta = X @ beta + (0 if np.isscalar(model._offset_exposure) else model._offset_exposure)
        mu = fam.link.inverse(eta)
        sd = np.sqrt(fam.variance(mu))
        D = X * fam.link.inverse_deriv(eta)[:, None]
        for g in groups:
            ii = np.flatnonzero(lab == g)
            yield ii, y[ii] - mu[ii], sd[ii], D[ii]

    def pearson_sum(beta):
        return sum(np.sum((r / s) ** 2) for _, r, s, _ in clusters(beta))

    # scale: sum r^2 / (N - p), r = (y - mu)/sqrt(V); 1 for binomial/poisson
    # unless scale="X2"
    fixed = isinstance(fam, (families.Binomial, families.Poisson)) and model.scaletype is None
    scale = 1.0 if fixed else pearson_sum(params) / (N - p)
    out["scale"] = rel(result.scale, scale)

    # exchangeable alpha, computed from the mean parameters of the previous
    # iteration (statsmodels updates the dependence *before* the final mean step)
    R_of = lambda n: np.eye(n)  # noqa: E731
    if isinstance(model.cov_struct, cs.Exchangeable):
        hist = result.fit_history["params"]
        beta_prev = np.asarray(hist[-2])
        num, npairs = 0.0, 0.0
        for _, r, s, _ in clusters(beta_prev):
            e = r / s
            num += (e.sum() ** 2 - np.sum(e**2)) / 2
            npairs += len(e) * (len(e) - 1) / 2
        scale_a = pearson_sum(beta_prev) / (N - p)   # always N - p here, any family
        alpha = (num / scale_a) / (npairs - p)
        out["alpha"] = rel(model.cov_struct.dep_params, alpha)
        a = model.cov_struct.dep_params
        R_of = lambda n: (1 - a) * np.eye(n) + a * np.ones((n, n))  # noqa: E731

    # naive, robust and Mancl-DeRouen covariance at the final estimates
    B = np.zeros((p, p))
    C = np.zeros((p, p))
    parts = []
    for ii, r, s, D in clusters(params):
        V = np.outer(s, s) * R_of(len(ii))          # working covariance without phi
        Vinv_D = np.linalg.solve(V, D)
        B += D.T @ Vinv_D
        u = Vinv_D.T @ r
        C += np.outer(u, u)
        parts.append((r, D, V, Vinv_D))
    Binv = np.linalg.inv(B)
    out["cov_naive"] = rel(result.cov_naive, scale * Binv)
    out["cov_robust"] = rel(result.cov_robust, Binv @ C @ Binv)
    if cov_name == "bias_reduced":
        M = np.zeros((p, p))
        for r, D, V, Vinv_D in parts:
            H = D @ Binv @ Vinv_D.T                   # H_i = D_i B^-1 D_i' V_i^-1
            r_adj = np.linalg.solve(np.eye(len(r)) - H, r)
            u = Vinv_D.T @ r_adj
            M += np.outer(u, u)
        out["cov_robust_bc"] = rel(result.cov_robust_bc, Binv @ M @ Binv)
    return out


def fit_one(key, spec, variant):
    fixture, dataset, response, terms, groups, family, struct = spec
    data = load_dataset(dataset)
    X = design(data, terms)
    y = data[response].to_numpy(dtype=float)
    g = data[groups]
    g = g.astype(str).to_numpy() if isinstance(g.dtype, pd.CategoricalDtype) else g.to_numpy()
    model = sm.GEE(y, X, groups=g, family=family(), cov_struct=struct())
    opts = VARIANTS[variant]
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=statsmodels.tools.sm_exceptions.ConvergenceWarning)
        warnings.simplefilter("error", category=statsmodels.tools.sm_exceptions.IterationLimitWarning)
        res = model.fit(cov_type="bias_reduced", scale=opts["scale"], ctol=opts["ctol"],
                        maxiter=opts["maxiter"])
    checks = rederive(model, res, "bias_reduced")
    for what, value in checks.items():
        check(f"{key}/{variant}", what, value)
    dep = model.cov_struct.dep_params
    dep = [] if dep is None or isinstance(model.cov_struct, cs.Independence) else [float(dep)]
    names = list(X.columns)
    mat = lambda m: np.asarray(m, dtype=float).tolist()  # noqa: E731
    se = lambda m: np.sqrt(np.diag(np.asarray(m, dtype=float))).tolist()  # noqa: E731
    return {
        "scale_option": opts["scale"],
        "ctol": opts["ctol"],
        "maxiter": opts["maxiter"],
        "iterations": len(res.fit_history["params"]),
        "converged": bool(res.converged),
        "params": {"names": names, "values": np.asarray(res.params, dtype=float).tolist()},
        "scale": float(res.scale),
        "dep_params": dep,
        "se_robust": se(res.cov_robust),
        "vcov_robust": mat(res.cov_robust),
        "se_naive": se(res.cov_naive),
        "vcov_naive": mat(res.cov_naive),
        "se_bias_reduced": se(res.cov_robust_bc),
        "vcov_bias_reduced": mat(res.cov_robust_bc),
        "numpy_rederivation_max_rel_diff": checks,
    }


def main() -> None:
    records = {}
    for key, spec in MODELS.items():
        fixture, dataset, response, terms, groups, family, struct = spec
        variants = {}
        for variant in VARIANTS:
            if variant == "scale_X2" and family not in (families.Binomial, families.Poisson):
                continue
            variants[variant] = fit_one(key, spec, variant)
            print(f"{key:12s} {variant:9s} iterations {variants[variant]['iterations']:3d}  "
                  f"checks {max(variants[variant]['numpy_rederivation_max_rel_diff'].values()):.1e}")
        records[key] = {
            "geepack_fixture": fixture,
            "dataset": dataset,
            "response": response,
            "terms": terms,
            "groups": groups,
            "family": family.__name__,
            "cov_struct": struct.__name__,
            "variants": variants,
        }
    out = {
        "statsmodels_version": statsmodels.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
        "note": ("statsmodels GEE estimators differ from geepack's; see "
                 "tests/reference/GEE_ESTIMATORS.md. All three covariances come "
                 "from one fit with cov_type='bias_reduced'."),
        "models": records,
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
