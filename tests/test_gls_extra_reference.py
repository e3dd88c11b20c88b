"""multilevel.gls's MDependent(m) and robust covariance against R
(tests/reference/gls_extra.json, made by gls_extra_reference.R).

MDependent(m) is compared with nlme's corARMA(q = m) at fixed parameters (the
profiled log-likelihood at the lag correlations corARMA implies, to 1e-11) and
at the optimum where corARMA's MA(1) range does not bind (Orthodont, q = 1).
cov_params("robust") is the CR0 cluster sandwich: sandwich::vcovCL(type = "HC0",
cadjust = FALSE) on the data whitened by nlme's fitted V_j, compared at nlme's
estimates (1e-11 of sqrt(V_ii V_jj)) and for our own fit (1e-6: the optimizers
agree to ~1e-7).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import multilevel as ml
import numpy as np
import pandas as pd
import pytest
from multilevel.datasets import load_dataset
from multilevel.gls.result import GlsResult
from multilevel.variance import VarIdent

REFERENCE = json.loads((Path(__file__).parent / "reference" / "gls_extra.json").read_text())
OPTIMA = REFERENCE["mdependent_optimum"]
FIXED = REFERENCE["mdependent_fixed"]
ROBUST = REFERENCE["robust"]

_CORR = {"exchangeable": "exchangeable", "ar1": "ar1", "car1": "car1"}


def assert_cov_close(actual: Any, desired: Any, rtol: float, what: str) -> None:
    """Each entry within ``rtol sqrt(V_ii V_jj)``."""
    a, d = np.asarray(actual, dtype=float), np.asarray(desired, dtype=float)
    scale = np.sqrt(np.outer(np.diag(d), np.diag(d)))
    worst = np.max(np.abs(a - d) / scale)
    assert worst <= rtol, f"{what}: max scaled diff {worst:.3g}\n{a}\n{d}"


@pytest.fixture(scope="module")
def orthodont() -> pd.DataFrame:
    return load_dataset("Orthodont")


_FITS: dict[tuple[int, str], GlsResult] = {}


def _mdep_fit(orthodont: pd.DataFrame, q: int, method: str) -> GlsResult:
    if (q, method) not in _FITS:
        _FITS[q, method] = ml.gls("distance ~ age * Sex", orthodont, groups="Subject", corr=ml.MDependent(q),
                                  method=method)
    return _FITS[q, method]


@pytest.mark.parametrize("index", range(len(FIXED)), ids=[f"{e['model']}-{i % 3}" for i, e in enumerate(FIXED)])
def test_mdependent_loglik_at_corarma_parameters(orthodont: pd.DataFrame, index: int) -> None:
    ev = FIXED[index]
    fit = _mdep_fit(orthodont, ev["q"], ev["method"])
    prof = fit.objective.profile(fit.objective.join(np.asarray(ev["lag_correlations"]), np.zeros(0)))
    assert prof.loglik == pytest.approx(ev["loglik"], rel=1e-11)
    assert prof.sigma == pytest.approx(ev["sigma"], rel=1e-11)
    np.testing.assert_allclose(prof.beta, ev["coefficients"], rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("key", sorted(OPTIMA))
def test_mdependent_optimum_against_corarma(orthodont: pd.DataFrame, key: str) -> None:
    m = OPTIMA[key]
    fit = _mdep_fit(orthodont, m["q"], m["method"])
    assert fit.converged
    assert fit.df_model == m["loglik_df"]
    assert fit.loglik >= m["loglik"] - 1e-7  # corARMA(q)'s band is a subset of MDependent(q)'s
    if not m["interior"]:
        return
    # MA(1)'s optimum is inside |rho_1| < 1/2: the same optimum.
    assert fit.loglik == pytest.approx(m["loglik"], abs=1e-7)
    np.testing.assert_allclose(fit.corr_params, m["lag_correlations"], atol=1e-6)
    se = np.asarray(m["se"])
    assert np.all(np.abs(fit.params.to_numpy() - m["coefficients"]["values"]) <= 1e-6 * se)
    np.testing.assert_allclose(fit.bse, se, rtol=1e-6)
    assert fit.sigma == pytest.approx(m["sigma"], rel=1e-6)


def _robust_fit(m: dict[str, Any]) -> GlsResult:
    df = load_dataset(m["dataset"])
    formula = m["formula"].replace("sin(2*pi*", "np.sin(2*np.pi*").replace("cos(2*pi*", "np.cos(2*np.pi*")
    kwargs: dict[str, Any] = {"groups": m["groups"], "time": m["time"], "method": m["method"]}
    c = m["correlation"]
    if c:
        kwargs["corr"] = ml.MDependent(c["m"]) if c["type"] == "m-dependent" else _CORR[c["type"]]
    if m["variance"]:
        kwargs["variance"] = VarIdent(m["variance"]["stratum"])
    return ml.gls(formula, df, **kwargs)


@pytest.fixture(scope="module", params=sorted(ROBUST))
def robust_case(request: pytest.FixtureRequest) -> tuple[dict[str, Any], GlsResult]:
    m = ROBUST[request.param]
    return m, _robust_fit(m)


def test_robust_covariance_is_vcovcl_at_nlme_estimates(robust_case: tuple[dict[str, Any], GlsResult]) -> None:
    m, fit = robust_case
    if m["variance"]:
        assert list(fit.variance_params.index) == m["variance_params"]["names"]
    u = fit.objective.join(np.asarray(m["corr_params"]), np.asarray(m["variance_params"]["values"]))
    prof = fit.objective.profile(u)
    assert prof.loglik == pytest.approx(m["loglik"], rel=1e-10)
    at_nlme = GlsResult(fit.design, fit.structure, fit.objective, prof, u, fit.optsum)
    np.testing.assert_allclose(at_nlme.params, m["coefficients"]["values"], rtol=1e-9)
    assert_cov_close(at_nlme.cov_params("robust"), m["vcov_robust"], 1e-11, "robust vcov at nlme's estimates")
    assert_cov_close(at_nlme.cov_params("model"), m["vcov_model"], 1e-11, "model vcov at nlme's estimates")


def test_robust_covariance_of_the_fit(robust_case: tuple[dict[str, Any], GlsResult]) -> None:
    m, fit = robust_case
    assert fit.converged
    assert_cov_close(fit.cov_params("robust"), m["vcov_robust"], 1e-6, "robust vcov")
    np.testing.assert_allclose(np.sqrt(np.diag(fit.cov_params("robust"))), m["se_robust"], rtol=1e-6)
