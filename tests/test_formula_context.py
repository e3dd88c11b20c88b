"""Formulas as users write them: names from the caller's scope (``I(x * k)``, ``npy.log1p(x)``,
``f(x)``), R's ``offset(...)`` terms, and gls's ``reml=``."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.datasets import load_dataset
from multilevel.fixed_effects import fixed_design, missing_formula_variables
from multilevel.formula import FormulaContext, caller_context, formula_context, split_offsets
from multilevel.lmm.fit import lmm as lmm_function


def cube(v):
    """A module-level function: results whose formula uses it pickle it by reference."""
    return v ** 3


def _data(seed: int = 0, clusters: int = 30, size: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = clusters * size
    g = np.repeat(np.arange(clusters), size)
    x = rng.normal(size=n)
    t = rng.uniform(0.5, 4.0, n)
    df = pd.DataFrame({"g": g, "x": x, "t": t, "z": rng.normal(size=n)})
    df["y"] = 1.0 + 0.5 * x + rng.normal(size=clusters)[g] + rng.normal(size=n)
    df["count"] = rng.poisson(t * np.exp(0.2 + 0.3 * x + 0.3 * rng.normal(size=clusters)[g]))
    return df


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return _data()


# ----- names from the caller's scope --------------------------------------------------------------


def test_local_constant_matches_a_computed_column(df):
    k = 2.5  # noqa: F841 - read by the formula
    by_name = multilevel.lmm("y ~ I(x * k) + (1 | g)", df)
    by_column = multilevel.lmm("y ~ xk + (1 | g)", df.assign(xk=df.x * 2.5))
    assert by_name.params.index.tolist() == ["Intercept", "I(x * k)"]
    np.testing.assert_allclose(by_name.params.to_numpy(), by_column.params.to_numpy(), rtol=1e-12)
    assert by_name.loglik == pytest.approx(by_column.loglik, rel=1e-12)


def test_module_alias_and_own_function(df):
    import numpy as npy  # noqa: F401 - read by the formula

    def f(v):
        return v ** 2 + 1.0

    fit = multilevel.lmm("y ~ npy.log1p(t) + f(x) + (1 | g)", df)
    ref = multilevel.lmm("y ~ a + b + (1 | g)", df.assign(a=np.log1p(df.t), b=df.x ** 2 + 1.0))
    assert fit.params.index.tolist() == ["Intercept", "npy.log1p(t)", "f(x)"]
    np.testing.assert_allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-12)


def test_sqrt_and_numpy_work_without_an_import(df):
    # The column check always let sqrt(x) and numpy.log(x) through; now they also evaluate.
    fit = multilevel.lmm("y ~ sqrt(t) + numpy.log(t) + (1 | g)", df)
    ref = multilevel.lmm("y ~ a + b + (1 | g)", df.assign(a=np.sqrt(df.t), b=np.log(df.t)))
    np.testing.assert_allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-12)


def test_direct_function_and_callable_module_see_the_same_caller(df):
    k = 3.0  # noqa: F841
    a = multilevel.lmm("y ~ I(x * k) + (1 | g)", df)  # through the callable module's __call__
    b = lmm_function("y ~ I(x * k) + (1 | g)", df)    # the function itself
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


# The scope is the caller's frame: these fits are called right here, not from a lambda, whose own
# scope would not hold k.
def test_glmm_gee_gls_take_the_callers_names(df):
    k = 2.0  # noqa: F841
    ref = df.assign(xk=df.x * 2.0)
    pairs = [
        (multilevel.glmm("count ~ I(x * k) + (1 | g)", df, family="poisson"),
         multilevel.glmm("count ~ xk + (1 | g)", ref, family="poisson")),
        (multilevel.gee("count ~ I(x * k)", df, groups="g", family="poisson", corr="exchangeable"),
         multilevel.gee("count ~ xk", ref, groups="g", family="poisson", corr="exchangeable")),
        (multilevel.gls("y ~ I(x * k)", df, groups="g", corr="exchangeable"),
         multilevel.gls("y ~ xk", ref, groups="g", corr="exchangeable")),
    ]
    for a, b in pairs:
        np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-10)


def test_gls_variance_function_of_fitted_values_takes_the_callers_names(df):
    # varPower() refits on its own fitted values: every refit must see the caller's k.
    k = 2.0  # noqa: F841
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = multilevel.gls("y ~ I(x * k)", df, groups="g", variance=multilevel.VarPower())
        b = multilevel.gls("y ~ xk", df.assign(xk=df.x * 2.0), groups="g", variance=multilevel.VarPower())
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-8)


def _fit_in_a_scope(df: pd.DataFrame):
    """A fit whose formula's names (k, a local function, a module alias) are gone once this returns."""
    import numpy as nmp  # noqa: F401 - the formula's names
    k = 4.0  # noqa: F841

    def shift(v):
        return v + 10.0

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return multilevel.lmm("y ~ I(x * k) + shift(z) + nmp.sqrt(t) + (1 + I(x * k) | g)", df)


def test_predict_after_the_names_went_out_of_scope(df):
    fit = _fit_in_a_scope(df)
    new = _data(seed=5).head(12)
    X = np.column_stack([np.ones(12), new.x * 4.0, new.z + 10.0, np.sqrt(new.t)])
    np.testing.assert_allclose(fit.predict(new, re=False).to_numpy(), X @ fit.params.to_numpy(), rtol=1e-12)
    # The random slope's column I(x * k) on new data too: predictions with random effects differ from X beta
    # by exactly the rows' b0 + b1 * 4 x.
    b = fit.ranef["g"].loc[new.g.to_numpy()].to_numpy()
    with_re = X @ fit.params.to_numpy() + b[:, 0] + b[:, 1] * new.x.to_numpy() * 4.0
    np.testing.assert_allclose(fit.predict(new).to_numpy(), with_re, rtol=1e-10)


def test_pickled_result_keeps_module_level_names(df):
    fit = multilevel.lmm("y ~ cube(x) + I(t * math.pi) + (1 | g)", df)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is lost: no warning
        back = pickle.loads(pickle.dumps(fit))
    assert back.design.fixed.context["math"] is math
    new = _data(seed=2).head(5)
    np.testing.assert_array_equal(back.predict(new).to_numpy(), fit.predict(new).to_numpy())


def test_unpicklable_local_function_is_left_out_with_a_warning(df):
    def fit_with_lambda():
        square = lambda v: v ** 2  # noqa: F841
        return multilevel.lmm("y ~ square(x) + (1 | g)", df)

    fit = fit_with_lambda()
    new = df.head(4)
    assert np.isfinite(fit.predict(new).to_numpy()).all()  # the live result keeps the lambda
    with pytest.warns(UserWarning, match="'square'.*cannot be pickled"):
        back = pickle.loads(pickle.dumps(fit))
    np.testing.assert_array_equal(back.params.to_numpy(), fit.params.to_numpy())
    with pytest.raises(ValueError, match="'square'.*could not be pickled"):
        back.predict(new)
    import copy

    np.testing.assert_array_equal(copy.deepcopy(fit).predict(new).to_numpy(), fit.predict(new).to_numpy())


def test_a_name_in_neither_data_nor_scope_is_still_named(df):
    with pytest.raises(ValueError, match="'nowhere'"):
        multilevel.lmm("y ~ I(x * nowhere) + (1 | g)", df)
    with pytest.raises(ValueError, match="'nowhere'"):
        multilevel.gee("y ~ I(x * nowhere)", df, groups="g")


def test_data_column_wins_over_a_local_of_the_same_name_and_is_not_kept(df):
    x = np.zeros(len(df))  # noqa: F841 - a local named like a column
    k = 1.0  # noqa: F841
    fit = multilevel.lmm("y ~ I(x * k) + (1 | g)", df)
    ref = multilevel.lmm("y ~ x + (1 | g)", df)
    np.testing.assert_allclose(fit.params.to_numpy(), ref.params.to_numpy(), rtol=1e-12)
    assert set(fit.design.fixed.context) == {"k"}  # the result does not carry the local x array


def test_formulaic_transforms_are_not_shadowed_by_callers_variables(df):
    scale = 10.0  # noqa: F841 - a variable named like formulaic's scale()
    C = 3  # noqa: F841
    fit = multilevel.lmm("y ~ scale(x) + C(g % 2) + (1 | g)", df)
    assert fit.params.index.tolist() == ["Intercept", "scale(x)", "C(g % 2)[T.1]"]


def test_formula_context_keeps_only_the_names_the_formula_uses():
    scope = caller_context(0)  # this test's own scope
    assert "scope" not in formula_context(scope, "y ~ x")
    big = np.arange(10)  # noqa: F841
    ctx = formula_context(caller_context(0), "y ~ I(x * big) + np.log(x)", columns=["x", "y"])
    assert list(ctx) == ["big"]
    assert isinstance(ctx, FormulaContext)
    assert missing_formula_variables("y ~ I(x * big) + other", pd.DataFrame(columns=["x", "y"]), ctx) == ["other"]


# ----- offset(...) in the formula -----------------------------------------------------------------


@pytest.mark.parametrize(
    "formula, base, offsets",
    [
        ("y ~ x + offset(log(t)) + (1 | g)", "y ~ x + (1 | g)", ["log(t)"]),
        ("y ~ offset(t)", "y ~ 1", ["t"]),
        ("y ~ 0 + offset(t) + x", "y ~ 0 + x", ["t"]),
        ("y ~ offset(a) + x + offset(np.log(b * 2))", "y ~ x", ["a", "np.log(b * 2)"]),
        ("y ~ x + `offset(t)`", "y ~ x + `offset(t)`", []),
        ("y ~ offsets + x", "y ~ offsets + x", []),
    ],
)
def test_split_offsets(formula, base, offsets):
    assert split_offsets(formula) == (base, offsets)


@pytest.mark.parametrize("bad", ["y ~ x * offset(t)", "y ~ offset(t) - 1", "offset(y) ~ x", "y ~ x + offset()"])
def test_split_offsets_refuses_offsets_that_are_not_terms(bad):
    with pytest.raises(ValueError, match="offset"):
        split_offsets(bad)


def test_lmm_formula_offset_equals_offset_argument(df):
    a = multilevel.lmm("y ~ x + offset(log(t)) + (1 | g)", df)
    b = multilevel.lmm("y ~ x + (1 | g)", df, offset=np.log(df.t.to_numpy()))
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())
    assert a.loglik == b.loglik
    np.testing.assert_array_equal(a.fitted().to_numpy(), b.fitted().to_numpy())


def test_formula_offsets_and_offset_argument_add(df):
    a = multilevel.lmm("y ~ x + offset(log(t)) + offset(z / 2) + (1 | g)", df, offset="t")
    # The same sums in the same order: the argument plus the formula's offsets summed in formula order.
    b = multilevel.lmm("y ~ x + (1 | g)", df, offset=df.t.to_numpy() + (np.log(df.t.to_numpy()) + df.z / 2))
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())
    assert a.loglik == b.loglik
    c = multilevel.lmm("y ~ x + offset(log(t)) + offset(z / 2) + (1 | g)", df)
    assert abs(c.loglik - a.loglik) > 1e-3  # the argument counted


def test_glmm_poisson_log_exposure(df):
    a = multilevel.glmm("count ~ x + offset(log(t)) + (1 | g)", df, family="poisson")
    b = multilevel.glmm("count ~ x + (1 | g)", df, family="poisson", offset=np.log(df.t.to_numpy()))
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-12, atol=1e-14)
    assert a.loglik == pytest.approx(b.loglik, rel=1e-12)
    # A wrong offset would change the fit: the exposure matters.
    c = multilevel.glmm("count ~ x + (1 | g)", df, family="poisson")
    assert abs(float(c.params["Intercept"]) - float(a.params["Intercept"])) > 0.1


def test_gee_poisson_log_exposure(df):
    a = multilevel.gee("count ~ x + offset(log(t))", df, groups="g", family="poisson", corr="exchangeable")
    b = multilevel.gee("count ~ x", df, groups="g", family="poisson", corr="exchangeable",
                       offset=np.log(df.t.to_numpy()))
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.bse.to_numpy(), b.bse.to_numpy(), rtol=1e-12)


def test_offset_uses_the_callers_names(df):
    exposure_scale = 2.0  # noqa: F841
    a = multilevel.lmm("y ~ x + offset(t * exposure_scale) + (1 | g)", df)
    b = multilevel.lmm("y ~ x + (1 | g)", df, offset=df.t.to_numpy() * 2.0)
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


def test_missing_offset_values_drop_rows_like_other_columns(df):
    holes = df.assign(t=df.t.where(np.arange(len(df)) % 17 != 3))
    n_missing = int(holes.t.isna().sum())
    with pytest.warns(UserWarning, match=rf"dropped {n_missing} of 240 rows .*'t': {n_missing}"):
        a = multilevel.lmm("y ~ x + offset(log(t)) + (1 | g)", holes)
    kept = holes.dropna()
    b = multilevel.lmm("y ~ x + (1 | g)", kept, offset=np.log(kept.t.to_numpy()))
    np.testing.assert_array_equal(a.params.to_numpy(), b.params.to_numpy())


def test_bad_offsets_are_named(df):
    with pytest.raises(ValueError, match=r"offset\(log\(z\)\) has .* non-finite"), np.errstate(invalid="ignore"):
        multilevel.lmm("y ~ x + offset(log(z)) + (1 | g)", df)  # log of negative values
    with pytest.raises(ValueError, match="offset.*columns"):
        multilevel.lmm("y ~ x + offset(C(g % 3)) + (1 | g)", df)
    with pytest.raises(ValueError, match="offset.*random term"):
        multilevel.lmm("y ~ x + (1 + offset(t) | g)", df)
    with pytest.raises(ValueError, match="'nothere'"):
        multilevel.lmm("y ~ x + offset(nothere) + (1 | g)", df)


def test_gls_refuses_formula_offsets(df):
    with pytest.raises(ValueError, match="gls has no offset"):
        multilevel.gls("y ~ x + offset(t)", df, groups="g")


def test_fixed_design_offset_on_new_data(df):
    d = fixed_design("y ~ x + offset(log(t)) + offset(z)", df)
    np.testing.assert_array_equal(d.offset, np.log(df.t.to_numpy()) + df.z.to_numpy())
    new = _data(seed=9).head(6)
    np.testing.assert_array_equal(d.offset_for(new), np.log(new.t.to_numpy()) + new.z.to_numpy())
    assert fixed_design("y ~ x", df).offset_for(new) is None


# ----- gls: reml= as an alias of method= ----------------------------------------------------------


def test_gls_reml_alias(df):
    kw = {"groups": "g", "corr": "exchangeable"}
    ml = multilevel.gls("y ~ x", df, method="ML", **kw)
    assert multilevel.gls("y ~ x", df, reml=False, **kw).loglik == ml.loglik
    assert multilevel.gls("y ~ x", df, reml=False, method="ML", **kw).loglik == ml.loglik
    reml = multilevel.gls("y ~ x", df, **kw)
    assert multilevel.gls("y ~ x", df, reml=True, **kw).loglik == reml.loglik
    assert reml.loglik != ml.loglik
    with pytest.raises(ValueError, match="method='REML' and reml=False disagree"):
        multilevel.gls("y ~ x", df, method="REML", reml=False, **kw)
    with pytest.raises(ValueError, match="method='ML' and reml=True disagree"):
        multilevel.gls("y ~ x", df, method="ML", reml=True, **kw)
    with pytest.raises(TypeError, match="reml must be True or False"):
        multilevel.gls("y ~ x", df, reml="yes", **kw)


def test_predict_on_new_rows_applies_the_offsets() -> None:
    # an offset column, a formula offset(...) and an offset array: predict(newdata) equals the fitted
    # values on the fit's own rows (the glmm used to drop an offset column silently)
    epil = load_dataset("epil").assign(off=lambda d: np.log(d.base / 4))
    by_column = multilevel.glmm("y ~ trt + (1 | subject)", epil, family="poisson", offset="off")
    in_formula = multilevel.glmm("y ~ trt + offset(off) + (1 | subject)", epil, family="poisson")
    marginal = multilevel.gee("y ~ trt + offset(off)", epil, groups="subject", family="poisson")
    for fit in (by_column, in_formula, marginal):
        np.testing.assert_allclose(fit.predict(epil).to_numpy(), fit.fitted().to_numpy(), rtol=1e-12)
    as_array = multilevel.glmm("y ~ trt + (1 | subject)", epil, family="poisson", offset=epil.off.to_numpy())
    with pytest.raises(ValueError, match="offset array; pass offset="):
        as_array.predict(epil)
    np.testing.assert_allclose(as_array.predict(epil, offset=epil.off.to_numpy()).to_numpy(),
                               as_array.fitted().to_numpy(), rtol=1e-12)
