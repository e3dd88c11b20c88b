"""Results are values: every accessor returns the same thing whatever ran
before it, and every result pickles, deep-copies and crosses a process pool
with all its accessors intact."""

from __future__ import annotations

import copy
import multiprocessing
import pickle
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.datasets import load_dataset


def _fits() -> dict:
    sleep = load_dataset("sleepstudy")
    cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    ohio = load_dataset("ohio")
    orth = load_dataset("Orthodont")
    return {
        "lmm": (multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep), sleep),
        "glmm": (multilevel.glmm("p ~ period + (1 | herd)", cbpp, family="binomial", weights="size"), cbpp),
        "gee": (multilevel.gee("resp ~ age + smoke", ohio, groups="id", time="age", family="binomial",
                               corr="ar1"), ohio),
        "gls": (multilevel.gls("distance ~ age * Sex", orth, groups="Subject", corr="exchangeable",
                               variance=multilevel.VarIdent("Sex")), orth),
    }


ACCESSORS = {
    "lmm": {
        "params": lambda f, d: f.params, "bse": lambda f, d: f.bse, "pvalues": lambda f, d: f.pvalues,
        "conf_int": lambda f, d: f.conf_int(), "cov": lambda f, d: f.cov_params(), "theta": lambda f, d: f.theta,
        "varcorr": lambda f, d: f.varcorr, "ranef": lambda f, d: f.ranef["Subject"],
        "condvar": lambda f, d: f.ranef_condvar()["Subject"], "loglik": lambda f, d: f.loglik,
        "fitted": lambda f, d: f.fitted(), "resid": lambda f, d: f.resid(), "predict": lambda f, d: f.predict(d),
        "icc": lambda f, d: f.icc(), "summary": lambda f, d: str(f.summary()),
    },
    "glmm": {
        "params": lambda f, d: f.params, "bse": lambda f, d: f.bse, "cov": lambda f, d: f.cov_params(),
        "conditional": lambda f, d: f.cov_params("conditional"), "theta": lambda f, d: f.theta,
        "condvar": lambda f, d: f.ranef_condvar()["herd"], "ranef": lambda f, d: f.ranef["herd"],
        "loglik": lambda f, d: f.loglik, "fitted": lambda f, d: f.fitted(),
        "pearson": lambda f, d: f.resid("pearson"), "predict": lambda f, d: f.predict(d),
        "summary": lambda f, d: str(f.summary()),
    },
    "gee": {
        "params": lambda f, d: f.params, "robust": lambda f, d: f.cov_params("robust"),
        "naive": lambda f, d: f.cov_params("naive"), "bias_reduced": lambda f, d: f.cov_params("bias_reduced"),
        "jackknife": lambda f, d: f.cov_params("jackknife"), "alpha": lambda f, d: f.corr_params,
        "qic": lambda f, d: f.qic(), "fitted": lambda f, d: f.fitted(), "resid": lambda f, d: f.resid("pearson"),
        "predict": lambda f, d: f.predict(d), "summary": lambda f, d: str(f.summary()),
    },
    "gls": {
        "params": lambda f, d: f.params, "bse": lambda f, d: f.bse, "robust": lambda f, d: f.cov_params("robust"),
        "corr": lambda f, d: f.corr_params, "variance": lambda f, d: f.variance_params,
        "intervals": lambda f, d: f.intervals(), "fitted": lambda f, d: f.fitted(),
        "resid": lambda f, d: f.resid("normalized"), "predict": lambda f, d: f.predict(d),
        "summary": lambda f, d: str(f.summary()),
    },
}


def assert_identical(a, b, what: str) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True, obj=what)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True, obj=what)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), what
        for k in a:
            assert_identical(a[k], b[k], f"{what}[{k}]")
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b, equal_nan=True), what
    else:
        assert a == b or (a != a and b != b), what


def values(fit, data, family: str, order: list[str]) -> dict:
    return {name: ACCESSORS[family][name](fit, data) for name in order}


@pytest.fixture(scope="module")
def fits():
    return _fits()


@pytest.mark.parametrize("family", list(ACCESSORS))
def test_accessors_do_not_depend_on_order(family):
    names = list(ACCESSORS[family])
    reference = None
    for seed in range(3):
        fit, data = _fits()[family]  # a fresh fit each time: nothing computed yet
        order = names[:]
        random.Random(seed).shuffle(order)
        got = values(fit, data, family, order)
        again = values(fit, data, family, names)  # and a second time, after everything ran
        for name in names:
            assert_identical(got[name], again[name], f"{family} {name} on a second call")
        if reference is None:
            reference = got
        for name in names:
            assert_identical(got[name], reference[name], f"{family} {name} after another order")


@pytest.mark.parametrize("family", list(ACCESSORS))
def test_results_pickle_and_deepcopy(fits, family):
    fit, data = fits[family]
    names = list(ACCESSORS[family])
    before = values(fit, data, family, names)
    for other in (pickle.loads(pickle.dumps(fit)), copy.deepcopy(fit)):
        after = values(other, data, family, names)
        for name in names:
            assert_identical(after[name], before[name], f"{family} {name} after a round trip")


def _remote_values(payload: bytes) -> bytes:
    fit, data, family = pickle.loads(payload)
    return pickle.dumps(values(fit, data, family, list(ACCESSORS[family])))


def test_results_cross_a_process_pool(fits):
    # spawn: a forked child of a process whose OpenMP threads have run can hang (libgomp is not fork-safe)
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        for family, (fit, data) in fits.items():
            local = values(fit, data, family, list(ACCESSORS[family]))
            remote = pickle.loads(pool.submit(_remote_values, pickle.dumps((fit, data, family))).result())
            for name in local:
                assert_identical(remote[name], local[name], f"{family} {name} in another process")


def test_families_structures_and_variance_functions_pickle():
    objects = [multilevel.get_family(f, l) for f, l in (("binomial", "probit"), ("poisson", "log"),
                                                        ("gamma", "inverse"), ("gaussian", "identity"))]
    objects += [multilevel.Exchangeable(), multilevel.Ar1(), multilevel.MDependent(2), multilevel.Unstructured(),
                multilevel.VarIdent("Sex"), multilevel.VarPower("age"), multilevel.VarExp("age")]
    for obj in objects:
        assert pickle.loads(pickle.dumps(obj)) == obj
    orth = load_dataset("Orthodont")
    bound = multilevel.VarPower("age").bind(orth)
    again = pickle.loads(pickle.dumps(bound))
    assert np.array_equal(again.sd_factors(np.array([0.3])), bound.sd_factors(np.array([0.3])))


def test_lmm_core_pickles_and_copies():
    sleep = load_dataset("sleepstudy")
    fit = multilevel.lmm("Reaction ~ Days + (Days | Subject) + (1 | Days)", sleep)
    core = fit._core
    theta = fit.theta.to_numpy()
    for other in (pickle.loads(pickle.dumps(core)), core.copy()):
        assert other.objective(theta, True) == core.objective(theta, True)
        assert other.rest_storage == core.rest_storage
    raw = getattr(core, "core", core)  # the C++ core inside a ShiftedCore (lmm/response_shift.py)
    state = list(raw.__getstate__())
    outer, inner, vals = state[10]
    bad = inner.copy()
    bad[0] = 10**6
    state[10] = (outer, bad, vals)
    with pytest.raises(ValueError, match="not a valid sparse matrix"):
        multilevel._core.LmmCore.__new__(multilevel._core.LmmCore).__setstate__(tuple(state))
