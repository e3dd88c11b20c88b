"""Linear mixed models against lme4 (tests/reference/lmm.json).

Objectives at fixed theta must agree tightly (1e-8 relative); at our optimum
the log-likelihood may only be better than lme4's or within 1e-4, fixed
effects within 1% of their standard error, standard errors and sigma within
0.1%. Estimates at lme4's own theta (beta, b, conditional variances, fitted
values) agree to 1e-6.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import eval_rule, lme4_name, load_reference
from multilevel.lmm import fit_design, lmm_design, result_at_theta
from multilevel.lmm.fit import lmm_core

MODELS = sorted(load_reference("lmm"))


def design_for(ref: dict, datasets: dict):
    data = datasets[ref["dataset"]]
    weights = eval_rule(ref["weights"], data) if ref.get("weights") else None
    offset = eval_rule(ref["offset"], data) if ref.get("offset") else None
    return lmm_design(ref["formula"], data, weights=weights, offset=offset)


@pytest.fixture(scope="module")
def fits(lmm_reference, datasets):
    """Our fit of every reference model, computed once."""
    out = {}
    for key in MODELS:
        ref = lmm_reference[key]
        out[key] = fit_design(design_for(ref, datasets), reml=ref["reml"])
    return out


@pytest.mark.parametrize("key", MODELS)
def test_objective_at_reference_theta(key, lmm_reference, datasets):
    ref = lmm_reference[key]
    design = design_for(ref, datasets)
    for storage in ("dense", "sparse") if len(design.terms) > 1 else ("auto",):
        core = lmm_core(design, storage)
        ours = core.objective(np.array(ref["theta"]), ref["reml"])
        assert ours == pytest.approx(ref["objective"], rel=1e-8)
        for check in ref["objective_checks"]:
            ours = core.objective(np.array(check["theta"], dtype=float), ref["reml"])
            assert ours == pytest.approx(check["objective"], rel=1e-8)


@pytest.mark.parametrize("key", MODELS)
def test_optimum_not_worse_than_lme4(key, lmm_reference, fits):
    ref, fit = lmm_reference[key], fits[key]
    assert fit.converged
    assert fit.loglik >= ref["loglik"] - 1e-4
    se_ref = np.array(ref["fixef_se"])
    beta_ref = np.array(ref["fixef"]["values"])
    assert [lme4_name(n) for n in fit.params.index] == ref["fixef"]["names"]
    assert np.all(np.abs(fit.params.to_numpy() - beta_ref) <= 0.01 * se_ref)
    np.testing.assert_allclose(fit.bse.to_numpy(), se_ref, rtol=1e-3)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    assert fit.singular == ref["singular"]
    assert fit.nobs == ref["nobs"]
    assert fit.ngroups == ref["ngroups"]
    assert [lme4_name(n) for n in fit.theta.index] == ref["theta_names"]


@pytest.mark.parametrize("key", MODELS)
def test_estimates_at_reference_theta(key, lmm_reference, datasets):
    ref = lmm_reference[key]
    res = result_at_theta(design_for(ref, datasets), ref["theta"], reml=ref["reml"])
    np.testing.assert_allclose(res.params.to_numpy(), ref["fixef"]["values"], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(res.cov_params().to_numpy(), np.array(ref["vcov"]), rtol=1e-6, atol=1e-12)
    assert res.sigma == pytest.approx(ref["sigma"], rel=1e-8)
    assert res.loglik == pytest.approx(ref["loglik"], rel=1e-8)
    assert res.aic == pytest.approx(ref["aic"], rel=1e-8)
    assert res.bic == pytest.approx(ref["bic"], rel=1e-8)
    np.testing.assert_allclose(res.fitted().to_numpy()[:10], ref["fitted_head"], rtol=1e-7)
    np.testing.assert_allclose(res.resid().to_numpy()[:10], ref["resid_head"], rtol=1e-6, atol=1e-8)
    vc = res.varcorr
    for row in ref["varcorr"]:
        if row["grp"] == "Residual":
            ours = vc[vc.group == "Residual"].iloc[0]
        else:
            group = row["grp"].split(".")[0]  # lme4 renames repeated groups "Subject.1"
            sel = vc[(vc.group == group) & (vc.term1.map(lme4_name, na_action="ignore") == row["var1"])]
            sel = sel[sel.term2.isna()] if row["var2"] is None else sel[sel.term2.map(lme4_name, na_action="ignore") == row["var2"]]
            ours = sel.iloc[0]
        assert ours["variance"] == pytest.approx(row["vcov"], rel=1e-6, abs=1e-10)
        expected = ours["sd"] if row["var2"] is None else ours["corr"]
        assert expected == pytest.approx(row["sdcor"], rel=1e-6, abs=1e-10)
    if not ref.get("ranef"):
        return
    condvar = res.ranef_condvar()
    for group, block in ref["ranef"].items():
        ours = res.ranef[group]
        assert [lme4_name(c) for c in ours.columns] == block["columns"]
        assert [str(v) for v in ours.index] == block["levels"]
        np.testing.assert_allclose(ours.to_numpy(), np.array(block["values"]), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(condvar[group].to_numpy(), np.array(block["condvar"]), rtol=1e-6, atol=1e-10)
