"""The public names work as documented: callable subpackages, concurrent fits, numbers held as objects."""

from __future__ import annotations

import functools
import inspect
import pickle
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import multilevel
from multilevel.datasets import load_dataset


@pytest.mark.parametrize("name", ["lmm", "glmm", "gls", "gee"])
def test_each_family_is_a_callable_subpackage(name: str) -> None:
    family = getattr(multilevel, name)
    assert callable(family)
    function = getattr(family, name)  # the function inside the subpackage
    assert inspect.signature(family) == inspect.signature(function)
    assert family.__doc__ == function.__doc__  # help(multilevel.lmm) shows the function
    assert pickle.loads(pickle.dumps(functools.partial(family, "y ~ x"))).func is family


def test_readme_module_paths_resolve() -> None:
    # these failed when the function lmm hid the subpackage lmm (README, "array level")
    import multilevel.gee.design
    import multilevel.lmm.residual

    sleep = load_dataset("sleepstudy")
    design = multilevel.lmm.lmm_design("Reaction ~ Days + (Days | Subject)", sleep)
    at = multilevel.lmm.result_at_theta(design, [1.0, 0.0, 0.2])
    assert at.objective == pytest.approx(float(at._core.objective(np.array([1.0, 0.0, 0.2]), True)))
    assert multilevel.gee.design.gee_design is multilevel.gee.gee_design


def _fits() -> dict[str, object]:
    sleep = load_dataset("sleepstudy")
    cbpp = load_dataset("cbpp").assign(p=lambda d: d.incidence / d["size"])
    ohio = load_dataset("ohio")
    return {
        "lmm": lambda: multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep).params,
        "glmm": lambda: multilevel.glmm("p ~ period + (1 | herd)", cbpp, weights="size",
                                        family="binomial").params,
        "gls": lambda: multilevel.gls("Reaction ~ Days", sleep, groups="Subject", corr="ar1").params,
        "gee": lambda: multilevel.gee("resp ~ age + smoke", ohio, groups="id", family="binomial",
                                      corr="exchangeable").params,
    }


def test_concurrent_fits_from_python_threads_equal_serial_fits() -> None:
    # the core releases the GIL; fits in several threads must not share state
    fits = _fits()
    serial = {k: f() for k, f in fits.items()}
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {(k, i): pool.submit(f) for i in range(2) for k, f in fits.items()}
        for (k, _), future in futures.items():
            np.testing.assert_array_equal(future.result().to_numpy(), serial[k].to_numpy())


def test_numbers_held_as_objects_are_numeric_with_a_warning() -> None:
    sleep = load_dataset("sleepstudy")
    as_objects = sleep.assign(Days=sleep.Days.astype(object))
    as_objects.loc[5, "Days"] = None
    with pytest.warns(UserWarning, match="'Days' has dtype object but holds numbers"):
        fit = multilevel.lmm("Reaction ~ Days + (1 | Subject)", as_objects)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the dropped row
        numeric = multilevel.lmm("Reaction ~ Days + (1 | Subject)", as_objects.assign(
            Days=pd.to_numeric(as_objects.Days)))
    assert fit.nobs == 179
    np.testing.assert_allclose(fit.params.to_numpy(), numeric.params.to_numpy(), rtol=1e-12)


def test_verbose_prints_the_optimizer_and_scoring_steps(capsys: pytest.CaptureFixture[str]) -> None:
    sleep = load_dataset("sleepstudy")
    quiet = multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep)
    assert capsys.readouterr().out == ""
    loud = multilevel.lmm("Reaction ~ Days + (Days | Subject)", sleep, verbose=2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("evaluation     1: objective") and " at [" in lines[0]
    assert len(lines) >= 20 and loud.objective == quiet.objective
    multilevel.gee("resp ~ age + smoke", load_dataset("ohio"), groups="id", family="binomial", corr="ar1",
                   verbose=True)
    assert capsys.readouterr().out.startswith("iteration    1: step fraction 1")
    with pytest.raises(TypeError, match="verbose must be"):
        multilevel.gls("Reaction ~ Days", sleep, groups="Subject", corr="ar1", verbose="yes")
