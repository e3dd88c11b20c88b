"""statsmodels' GEE on some fixtures of gee_links.json (made by gee_links_reference.R).

Run from the repository root (statsmodels is not a dependency of multilevel;
any environment with it and multilevel importable will do)::

    python tests/reference/gee_links_statsmodels.py

It writes ``tests/reference/gee_links_statsmodels.json``:

* ``Stationary(max_lag=m, grid=False)`` with the time column is multilevel's
  ``MDependent(m)``: statsmodels averages the lag-k products per cluster and
  then over clusters, and divides by the mean squared Pearson residual; on
  balanced clusters without gaps (epil, ohio) that is the pooled moment
  estimate geepack and multilevel use, so the estimates themselves must agree
  (``same_estimator``).
* The poisson sqrt and inverse Gaussian fits (which geepack cannot do) with
  statsmodels' own moment estimators (they differ from geepack's): the
  naive, robust and bias-reduced covariances at statsmodels' estimates check
  the links' derivatives independently of R.

The covariances are re-derived with numpy from the fitted values (the script
stops unless they agree with statsmodels to 1e-10). ``json`` writes floats
with ``repr``, which round-trips doubles exactly.
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
from statsmodels.genmod.families import links

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "python"))
from multilevel.datasets import load_dataset

OUT = ROOT / "tests" / "reference" / "gee_links_statsmodels.json"
FIXTURES = json.loads((ROOT / "tests" / "reference" / "gee_links.json").read_text())["models"]
TOL = 1e-10


def design(data: pd.DataFrame, terms: list[str]) -> pd.DataFrame:
    """Intercept plus the terms; factors get R's treatment contrasts (first level dropped)."""
    cols = {"(Intercept)": np.ones(len(data))}
    for term in terms:
        x = data[term]
        if isinstance(x.dtype, pd.CategoricalDtype):
            for level in x.cat.categories[1:]:
                cols[f"{term}{level}"] = (x == level).to_numpy(dtype=float)
        else:
            cols[term] = x.to_numpy(dtype=float)
    return pd.DataFrame(cols)


# key -> (gee_links.json fixture, family factory, cov_struct factory, same estimator as geepack)
MODELS = {
    "epil_mdep2": ("epil_mdep2", lambda: families.Poisson(), lambda: cs.Stationary(max_lag=2, grid=False), True),
    "ohio_probit_mdep1": ("ohio_probit_mdep1", lambda: families.Binomial(links.Probit()),
                          lambda: cs.Stationary(max_lag=1, grid=False), True),
    "epil_poisson_sqrt_exch": ("epil_poisson_sqrt_exch", lambda: families.Poisson(links.Sqrt()),
                               cs.Exchangeable, False),
    "epil_poisson_sqrt_ar1": ("epil_poisson_sqrt_ar1", lambda: families.Poisson(links.Sqrt()),
                              lambda: cs.Autoregressive(grid=False), False),
    "dietox_invgauss_mu2_exch": ("dietox_invgauss_mu2_exch",
                                 lambda: families.InverseGaussian(links.InverseSquared()), cs.Exchangeable, False),
    "dietox_invgauss_inverse_ar1": ("dietox_invgauss_inverse_ar1",
                                    lambda: families.InverseGaussian(links.InversePower()),
                                    lambda: cs.Autoregressive(grid=False), False),
    "dietox_invgauss_log_exch": ("dietox_invgauss_log_exch", lambda: families.InverseGaussian(links.Log()),
                                 cs.Exchangeable, False),
    "dietox_invgauss_identity_ar1": ("dietox_invgauss_identity_ar1",
                                     lambda: families.InverseGaussian(links.Identity()),
                                     lambda: cs.Autoregressive(grid=False), False),
}


def rel_cov(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    return float(np.max(np.abs(a - b) / np.sqrt(np.abs(np.outer(np.diag(b), np.diag(b))))))


def rederive(model, result) -> dict[str, float]:
    """Naive, robust and Mancl-DeRouen covariances from the fitted values with numpy."""
    fam = model.family
    params = np.asarray(result.params)
    p = params.size
    B = np.zeros((p, p))
    C = np.zeros((p, p))
    parts = []
    for i in range(model.num_group):
        X, y = model.exog_li[i], model.endog_li[i]
        eta = X @ params
        mu = fam.link.inverse(eta)
        s = np.sqrt(fam.variance(mu))
        D = X * fam.link.inverse_deriv(eta)[:, None]
        R = model.cov_struct.covariance_matrix(mu, i)[0]
        V = np.outer(s, s) * R
        Vinv_D = np.linalg.solve(V, D)
        B += D.T @ Vinv_D
        u = Vinv_D.T @ (y - mu)
        C += np.outer(u, u)
        parts.append((y - mu, D, Vinv_D))
    Binv = np.linalg.inv(B)
    M = np.zeros((p, p))
    for r, D, Vinv_D in parts:
        H = D @ Binv @ Vinv_D.T
        u = Vinv_D.T @ np.linalg.solve(np.eye(len(r)) - H, r)
        M += np.outer(u, u)
    return {"cov_naive": rel_cov(result.cov_naive, result.scale * Binv),
            "cov_robust": rel_cov(result.cov_robust, Binv @ C @ Binv),
            "cov_robust_bc": rel_cov(result.cov_robust_bc, Binv @ M @ Binv)}


def fit_one(key: str) -> dict:
    fixture, family, struct, same = MODELS[key]
    m = FIXTURES[fixture]
    data = load_dataset(m["dataset"])
    if m["drop_rows"]:
        raise SystemExit(f"{key}: dropped rows are not handled here")
    response, rhs = (part.strip() for part in m["formula"].split("~", 1))
    X = design(data, [t.strip() for t in rhs.split("+")])
    if list(X.columns) != m["coefficients"]["names"]:
        raise SystemExit(f"{key}: columns {list(X.columns)} differ from R's {m['coefficients']['names']}")
    y = data[response].to_numpy(dtype=float)
    g = data[m["id"]]
    g = g.astype(str).to_numpy() if isinstance(g.dtype, pd.CategoricalDtype) else g.to_numpy()
    time = None
    if m["waves"]:
        t = data[m["waves"]]
        time = (t.cat.codes.to_numpy() + 1) if isinstance(t.dtype, pd.CategoricalDtype) else t.to_numpy()
        time = np.asarray(time, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=statsmodels.tools.sm_exceptions.DomainWarning)
        model = sm.GEE(y, X, groups=g, time=time, family=family(), cov_struct=struct())
        warnings.simplefilter("error", category=statsmodels.tools.sm_exceptions.ConvergenceWarning)
        warnings.simplefilter("error", category=statsmodels.tools.sm_exceptions.IterationLimitWarning)
        start = "statsmodels' GLM"
        try:
            res = model.fit(cov_type="bias_reduced", ctol=1e-10, maxiter=2000)
        except ValueError:  # the starting GLM diverges (inverse Gaussian 1/mu^2): start at R's estimates
            start = "gee_links.json coefficients"
            res = model.fit(cov_type="bias_reduced", ctol=1e-10, maxiter=2000,
                            start_params=np.asarray(m["coefficients"]["values"]))
    checks = rederive(model, res)
    for what, value in checks.items():
        if not value < TOL:
            raise SystemExit(f"{key}: numpy re-derivation of {what} disagrees ({value:.3e})")
    dep = model.cov_struct.dep_params
    if isinstance(model.cov_struct, cs.Stationary):
        dep = np.asarray(dep, dtype=float)[1:].tolist()  # lag 0 is 1
    else:
        dep = [float(dep)]
    mat = lambda a: np.asarray(a, dtype=float).tolist()
    se = lambda a: np.sqrt(np.diag(np.asarray(a, dtype=float))).tolist()
    return {
        "fixture": fixture,
        "family": type(model.family).__name__,
        "link": type(model.family.link).__name__,
        "cov_struct": type(model.cov_struct).__name__,
        "same_estimator": same,
        "start": start,
        "iterations": len(res.fit_history["params"]),
        "params": {"names": list(X.columns), "values": np.asarray(res.params, dtype=float).tolist()},
        "scale": float(res.scale),
        "dep_params": dep,
        "se_robust": se(res.cov_robust),
        "vcov_robust": mat(res.cov_robust),
        "vcov_naive": mat(res.cov_naive),
        "vcov_bias_reduced": mat(res.cov_robust_bc),
        "numpy_rederivation_max_rel_diff": checks,
    }


def main() -> None:
    records = {}
    for key in MODELS:
        records[key] = fit_one(key)
        r = records[key]
        print(f"{key:30s} iterations {r['iterations']:3d}  checks "
              f"{max(r['numpy_rederivation_max_rel_diff'].values()):.1e}")
    out = {
        "statsmodels_version": statsmodels.__version__,
        "numpy_version": np.__version__,
        "python_version": platform.python_version(),
        "control": "GEE.fit(cov_type='bias_reduced', ctol=1e-10, maxiter=2000)",
        "models": records,
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print("wrote", OUT.relative_to(ROOT))


if __name__ == "__main__":
    main()
