"""Misspelled or unknown keyword arguments get a TypeError naming them and the close matches;
none is forwarded to the optimizer or ignored."""

from __future__ import annotations

import pytest

import multilevel
from multilevel.datasets import load_dataset


@pytest.mark.parametrize("call,message", [
    (lambda s, o: multilevel.lmm("Reaction ~ Days + (1 | Subject)", s, REML=False), "'REML'; did you mean 'reml'"),
    (lambda s, o: multilevel.glmm("Reaction ~ Days + (1 | Subject)", s, family="poisson", nAGQ=3),
     "'nAGQ'; did you mean 'nagq'"),
    (lambda s, o: multilevel.gls("distance ~ age", o, weights="age"), "'weights'; it takes formula, data"),
    (lambda s, o: multilevel.gls("distance ~ age", o, groups="Subject", corr="ar1", mehtod="ML"),
     "'mehtod'; did you mean 'method'"),
    (lambda s, o: multilevel.fit_lmm([1.0, 2.0], [[1.0], [1.0]], [], maxevals=3), "did you mean 'maxeval'"),
])
def test_unknown_keywords_are_named(call, message):
    with pytest.raises(TypeError, match=message):
        call(load_dataset("sleepstudy"), load_dataset("Orthodont"))


def test_optimizer_options_still_pass():
    fit = multilevel.lmm("Reaction ~ Days + (1 | Subject)", load_dataset("sleepstudy"), maxeval=3, ftol_rel=1e-6)
    assert fit.optsum.feval <= 4
